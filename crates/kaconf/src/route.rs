//! `virtual_routes` / `static_routes` and `virtual_rules` / `static_rules`
//! lines: keepalived's subset of `ip route` / `ip rule` syntax, typed.

use std::net::IpAddr;

use crate::lexer::Word;
use crate::tree::Stmt;
use crate::value::{Cx, Emitter, LineValue, Prefix};

/// What a route does with matching packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteKind {
    #[default]
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
}

/// One `virtual_routes` line, e.g.
/// `src 198.51.100.250 to 203.0.113.0/24 via 198.51.100.1 dev eth0 table 100 metric 5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLine {
    /// The words as written (for `-t` output and the engine's log lines).
    pub words: Vec<String>,
    pub dst: Prefix,
    pub src: Option<IpAddr>,
    /// The gateway; more than one (`via A or B`, `nexthop via A nexthop via
    /// B`) make a multipath route.
    pub via: Vec<IpAddr>,
    pub dev: Option<String>,
    /// A number, or `main` (254), `local` (255), `default` (253).
    pub table: Option<u32>,
    pub metric: Option<u32>,
    /// `RT_SCOPE_*`.
    pub scope: Option<u8>,
    pub kind: RouteKind,
    pub onlink: bool,
    pub no_track: bool,
}

/// One `virtual_rules` line, e.g. `from 198.51.100.250 table 100 priority 100`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleLine {
    pub words: Vec<String>,
    pub from: Option<Prefix>,
    pub to: Option<Prefix>,
    pub table: Option<u32>,
    pub priority: Option<u32>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub fwmark: Option<(u32, Option<u32>)>,
    pub no_track: bool,
}

/// `main`, `local`, `default` or a number.
pub fn table_number(s: &str) -> Option<u32> {
    match s {
        "main" => Some(254),
        "local" => Some(255),
        "default" => Some(253),
        n => n.parse().ok().filter(|n| *n > 0),
    }
}

/// `global`, `link`, … or a number, as `RT_SCOPE_*`.
pub fn scope_number(s: &str) -> Option<u8> {
    match s {
        "global" | "universe" => Some(0),
        "site" => Some(200),
        "link" => Some(253),
        "host" => Some(254),
        "nowhere" => Some(255),
        n => n.parse().ok(),
    }
}

/// `0x10/0xff`, `16`: a mark and an optional mask.
fn fwmark(s: &str) -> Option<(u32, Option<u32>)> {
    let num = |t: &str| match t.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => t.parse().ok(),
    };
    match s.split_once('/') {
        Some((m, k)) => Some((num(m)?, Some(num(k)?))),
        None => Some((num(s)?, None)),
    }
}

/// Reads the words of one line; each `(keyword, value)` goes to `set`, which
/// says whether it took it (`Err` with a message marks that word).
struct Walker<'a> {
    stmt: &'a Stmt,
    i: usize,
}

impl<'a> Walker<'a> {
    fn next(&mut self) -> Option<&'a Word> {
        let w = self.stmt.words.get(self.i);
        self.i += 1;
        w
    }

    /// The value after keyword `kw`, or an error at the keyword.
    fn value(&mut self, kw: &Word, cx: &mut Cx) -> Option<&'a Word> {
        let v = self.next();
        if v.is_none() {
            cx.error(
                self.stmt.loc.at_col(kw.col),
                format!("`{}` needs a value", kw.text),
            );
        }
        v
    }
}

fn prefix(w: &Word, stmt: &Stmt, cx: &mut Cx) -> Option<Prefix> {
    if w.text == "default" {
        return Some(Prefix {
            addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            len: Some(0),
        });
    }
    match Prefix::from_text(&w.text) {
        Ok(p) => Some(p),
        Err(e) => {
            cx.error(stmt.loc.at_col(w.col), format!("bad prefix: {e}"));
            None
        }
    }
}

fn address(w: &Word, stmt: &Stmt, cx: &mut Cx) -> Option<IpAddr> {
    let a = w.text.parse().ok();
    if a.is_none() {
        cx.error(
            stmt.loc.at_col(w.col),
            format!("`{}` is not an IP address", w.text),
        );
    }
    a
}

fn number<T: std::str::FromStr>(w: &Word, what: &str, stmt: &Stmt, cx: &mut Cx) -> Option<T> {
    let n = w.text.parse().ok();
    if n.is_none() {
        cx.error(
            stmt.loc.at_col(w.col),
            format!("`{}` is not a valid {what}", w.text),
        );
    }
    n
}

/// `ip route` options keepalived knows and keepalived-rs does not install.
const UNSUPPORTED_ROUTE_WORDS: &[&str] = &[
    "protocol",
    "proto",
    "mtu",
    "advmss",
    "realms",
    "tos",
    "dsfield",
    "initcwnd",
    "initrwnd",
    "hoplimit",
    "rtt",
    "rttvar",
    "features",
    "pref",
    "quickack",
    "congctl",
    "fastopen_no_cookie",
    "encap",
    "ttl-propagate",
    "expires",
    "window",
    "ssthresh",
    "reordering",
    "cwnd",
    "lock",
];

impl RouteLine {
    /// Takes keyword `w` (and its value); `None` after an error.
    fn take(&mut self, w: &Word, walk: &mut Walker<'_>, stmt: &Stmt, cx: &mut Cx) -> Option<()> {
        match w.text.as_str() {
            "src" => self.src = Some(address(walk.value(w, cx)?, stmt, cx)?),
            // `or` (deprecated in keepalived) and `nexthop via` add gateways
            // of a multipath route.
            "via" | "gw" | "or" => self.via.push(address(walk.value(w, cx)?, stmt, cx)?),
            "nexthop" => {
                let v = walk.value(w, cx)?;
                if v.text != "via" {
                    cx.error(
                        stmt.loc.at_col(v.col),
                        "keepalived-rs takes `nexthop via ADDRESS` only",
                    );
                    return None;
                }
                self.via.push(address(walk.value(v, cx)?, stmt, cx)?);
            }
            "dev" | "oif" => self.dev = Some(walk.value(w, cx)?.text.clone()),
            "table" => {
                let v = walk.value(w, cx)?;
                self.table = table_number(&v.text);
                if self.table.is_none() {
                    cx.error(
                        stmt.loc.at_col(v.col),
                        format!(
                            "unknown table `{}` (a number, main, local or default)",
                            v.text
                        ),
                    );
                    return None;
                }
            }
            "metric" | "preference" | "priority" => {
                self.metric = Some(number(walk.value(w, cx)?, "metric", stmt, cx)?);
            }
            "scope" => {
                let v = walk.value(w, cx)?;
                self.scope = scope_number(&v.text);
                if self.scope.is_none() {
                    cx.error(
                        stmt.loc.at_col(v.col),
                        format!("unknown scope `{}`", v.text),
                    );
                    return None;
                }
            }
            "blackhole" => self.kind = RouteKind::Blackhole,
            "unreachable" => self.kind = RouteKind::Unreachable,
            "prohibit" => self.kind = RouteKind::Prohibit,
            "throw" => self.kind = RouteKind::Throw,
            "onlink" => self.onlink = true,
            "no_track" => self.no_track = true,
            "to" => self.dst = prefix(walk.value(w, cx)?, stmt, cx)?,
            u if UNSUPPORTED_ROUTE_WORDS.contains(&u) => {
                cx.error(
                    stmt.loc.at_col(w.col),
                    format!("`{u}` in a route is not supported by keepalived-rs"),
                );
                return None;
            }
            _ => {
                cx.error(
                    stmt.loc.at_col(w.col),
                    format!("unexpected `{}` in a route", w.text),
                );
                return None;
            }
        }
        Some(())
    }
}

impl LineValue for RouteLine {
    fn parse_line(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        let unset = Prefix {
            addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            len: None,
        };
        let mut r = RouteLine {
            words: stmt.words.iter().map(|w| w.text.clone()).collect(),
            dst: unset,
            src: None,
            via: Vec::new(),
            dev: None,
            table: None,
            metric: None,
            scope: None,
            kind: RouteKind::Unicast,
            onlink: false,
            no_track: false,
        };
        let mut walk = Walker { stmt, i: 0 };
        while let Some(w) = walk.next() {
            let is_prefix = w.text == "default" || Prefix::from_text(&w.text).is_ok();
            if r.dst == unset && is_prefix {
                // The destination, written without `to`.
                r.dst = prefix(w, stmt, cx)?;
            } else {
                r.take(w, &mut walk, stmt, cx)?;
            }
        }
        if r.dst == unset {
            cx.error(stmt.loc, "a route needs a destination prefix");
            return None;
        }
        let fam = r.dst.addr.is_ipv4();
        if r.dst.len != Some(0) && r.src.iter().chain(&r.via).any(|a| a.is_ipv4() != fam) {
            cx.error(stmt.loc, "a route mixes IPv4 and IPv6 addresses");
            return None;
        }
        // `default via 2001:db8::1`: an IPv6 default route.
        if r.dst.len == Some(0) && r.dst.addr.is_unspecified() {
            if let Some(IpAddr::V6(_)) = r.via.first().copied().or(r.src) {
                r.dst.addr = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
            }
        }
        Some(r)
    }

    fn emit_line(&self, out: &mut Emitter) {
        out.line(&self.words);
    }
}

impl LineValue for RuleLine {
    fn parse_line(stmt: &Stmt, cx: &mut Cx) -> Option<Self> {
        let mut r = RuleLine {
            words: stmt.words.iter().map(|w| w.text.clone()).collect(),
            from: None,
            to: None,
            table: None,
            priority: None,
            iif: None,
            oif: None,
            fwmark: None,
            no_track: false,
        };
        let mut ok = true;
        let mut walk = Walker { stmt, i: 0 };
        while let Some(w) = walk.next() {
            match w.text.as_str() {
                "from" => {
                    let v = walk.value(w, cx)?;
                    r.from = if v.text == "all" {
                        None
                    } else {
                        prefix(v, stmt, cx)
                    };
                    ok &= r.from.is_some() || v.text == "all";
                }
                "to" => {
                    let v = walk.value(w, cx)?;
                    r.to = if v.text == "all" {
                        None
                    } else {
                        prefix(v, stmt, cx)
                    };
                    ok &= r.to.is_some() || v.text == "all";
                }
                "table" | "lookup" => {
                    let v = walk.value(w, cx)?;
                    r.table = table_number(&v.text);
                    if r.table.is_none() {
                        cx.error(
                            stmt.loc.at_col(v.col),
                            format!("unknown table `{}`", v.text),
                        );
                        ok = false;
                    }
                }
                "priority" | "preference" | "pref" => {
                    let v = walk.value(w, cx)?;
                    r.priority = number(v, "priority", stmt, cx);
                    ok &= r.priority.is_some();
                }
                "iif" | "dev" => r.iif = Some(walk.value(w, cx)?.text.clone()),
                "oif" => r.oif = Some(walk.value(w, cx)?.text.clone()),
                "fwmark" => {
                    let v = walk.value(w, cx)?;
                    r.fwmark = fwmark(&v.text);
                    if r.fwmark.is_none() {
                        cx.error(stmt.loc.at_col(v.col), format!("bad fwmark `{}`", v.text));
                        ok = false;
                    }
                }
                "no_track" => r.no_track = true,
                _ => {
                    cx.error(
                        stmt.loc.at_col(w.col),
                        format!("`{}` in a rule is not supported by keepalived-rs", w.text),
                    );
                    return None;
                }
            }
        }
        if r.table.is_none() {
            cx.error(stmt.loc, "a rule needs `table N`");
            return None;
        }
        if let (Some(f), Some(t)) = (r.from, r.to) {
            if f.addr.is_ipv4() != t.addr.is_ipv4() {
                cx.error(stmt.loc, "a rule mixes IPv4 and IPv6 prefixes");
                return None;
            }
        }
        ok.then_some(r)
    }

    fn emit_line(&self, out: &mut Emitter) {
        out.line(&self.words);
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    fn parse_str(text: &str) -> (crate::Config, Vec<String>) {
        let l = crate::parse_str(
            std::path::Path::new("t.conf"),
            text,
            &crate::Options::default(),
        );
        let errors = l
            .diagnostics
            .iter()
            .filter(|d| d.severity == crate::Severity::Error)
            .map(|d| d.message.clone())
            .collect();
        (l.config, errors)
    }

    fn routes(body: &str) -> Result<Vec<super::RouteLine>, String> {
        let text = format!(
            "vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 1\n priority 100\n virtual_ipaddress {{\n 198.51.100.250\n }}\n virtual_routes {{\n{body}\n }}\n}}\n"
        );
        let (config, errors) = parse_str(&text);
        if let Some(e) = errors.first() {
            return Err(e.clone());
        }
        Ok(config.instances[0]
            .body
            .virtual_routes
            .iter()
            .flat_map(|l| l.0.clone())
            .collect())
    }

    #[test]
    fn keepalived_route_forms() {
        let r = routes(
            " src 198.51.100.250 to 203.0.113.0/24 via 198.51.100.1 dev eth0 table 100 metric 5\n 203.0.113.64/26 dev eth0 scope link\n blackhole 203.0.113.128/25\n default via 2001:db8::1 table main",
        )
        .unwrap();
        assert_eq!(r.len(), 4);
        let v6 = routes(" fd00::/8 dev eth0").unwrap();
        assert_eq!(v6[0].dst.to_text(), "fd00::/8");
        assert_eq!(r[0].dst.to_text(), "203.0.113.0/24");
        assert_eq!(r[0].src, Some("198.51.100.250".parse().unwrap()));
        assert_eq!(r[0].via, vec!["198.51.100.1".parse::<IpAddr>().unwrap()]);
        assert_eq!((r[0].table, r[0].metric), (Some(100), Some(5)));
        assert_eq!(r[1].scope, Some(253));
        assert_eq!(r[2].kind, super::RouteKind::Blackhole);
        assert_eq!(r[3].dst.to_text(), "::/0");
        assert_eq!(r[3].table, Some(254));
    }

    #[test]
    fn multipath_routes() {
        let r = routes(
            " 203.0.113.0/24 via 198.51.100.1 or 198.51.100.2\n 203.0.112.0/24 nexthop via 198.51.100.1 nexthop via 198.51.100.3",
        )
        .unwrap();
        assert_eq!(r[0].via.len(), 2);
        assert_eq!(r[1].via[1], "198.51.100.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn bad_routes_name_the_word() {
        let e = routes(" 203.0.113.0/24 via 300.1.1.1").unwrap_err();
        assert!(e.contains("not an IP address"), "{e}");
        let e = routes(" 203.0.113.0/24 table nope").unwrap_err();
        assert!(e.contains("unknown table"), "{e}");
        let e = routes(" 203.0.113.0/24 mtu 1400").unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        let e = routes(" dev eth0").unwrap_err();
        assert!(e.contains("destination"), "{e}");
    }

    #[test]
    fn rules() {
        let text = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n 198.51.100.250\n }\n virtual_rules {\n from 198.51.100.250 table 100 priority 100\n to 203.0.113.0/24 fwmark 0x10/0xff lookup main\n from all iif eth0 table 7\n }\n}\n";
        let (config, errors) = parse_str(text);
        assert!(errors.is_empty(), "{errors:?}");
        let r: Vec<_> = config.instances[0]
            .body
            .virtual_rules
            .iter()
            .flat_map(|l| l.0.clone())
            .collect();
        assert_eq!(r[0].from.unwrap().to_text(), "198.51.100.250");
        assert_eq!((r[0].table, r[0].priority), (Some(100), Some(100)));
        assert_eq!(r[1].fwmark, Some((0x10, Some(0xff))));
        assert_eq!(r[1].table, Some(254));
        assert_eq!(r[2].iif.as_deref(), Some("eth0"));
        let (_, errors) = parse_str(
            "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n virtual_rules {\n from 198.51.100.250\n }\n}\n",
        );
        assert!(
            errors.iter().any(|e| e.contains("needs `table")),
            "{errors:?}"
        );
    }
}
