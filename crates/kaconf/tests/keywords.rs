//! Every keyword keepalived 2.4.3 knows is known here too: typed, an alias, or

#![allow(clippy::unwrap_used)]
//! read with a "not yet supported" warning — never "unknown".

use kaconf::model::*;
use kaconf::section::Section;

fn known<T: Section>() -> Vec<&'static str> {
    let mut v = T::keywords();
    v.extend(T::unsupported());
    v.extend(T::aliases().into_iter().map(|(a, _, _)| a));
    v
}

fn table(path: &str) -> Option<Vec<&'static str>> {
    Some(match path {
        "/" => known::<Config>(),
        "/global_defs" => known::<GlobalDefs>(),
        "/vrrp_instance" => known::<VrrpInstance>(),
        "/vrrp_instance/authentication" => known::<Authentication>(),
        "/vrrp_instance/auth_hmac" => known::<AuthHmac>(),
        "/vrrp_sync_group" => known::<SyncGroup>(),
        "/vrrp_script" => known::<VrrpScript>(),
        "/vrrp_track_process" => known::<TrackProcess>(),
        "/track_file" | "/vrrp_track_file" => known::<TrackFile>(),
        "/virtual_server" => known::<VirtualServerBody>(),
        "/virtual_server/real_server" => known::<RealServerBody>(),
        "/virtual_server/real_server/TCP_CHECK" => known::<TcpCheck>(),
        "/virtual_server/real_server/PING_CHECK" => known::<PingCheck>(),
        "/virtual_server/real_server/HTTP_GET" | "/virtual_server/real_server/SSL_GET" => {
            known::<HttpCheck>()
        }
        "/virtual_server/real_server/HTTP_GET/url" | "/virtual_server/real_server/SSL_GET/url" => {
            known::<Url>()
        }
        "/virtual_server/real_server/UDP_CHECK" => known::<UdpCheck>(),
        "/virtual_server/real_server/MISC_CHECK" => known::<MiscCheck>(),
        "/virtual_server/real_server/DNS_CHECK" => known::<DnsCheck>(),
        "/virtual_server/real_server/SMTP_CHECK" => known::<SmtpCheck>(),
        "/virtual_server/real_server/SMTP_CHECK/host" => known::<CheckConn>(),
        "/virtual_server/real_server/FILE_CHECK" => known::<FileCheck>(),
        "/virtual_server/real_server/BFD_CHECK" => known::<BfdCheck>(),
        // Blocks read whole as "not yet supported" at the top level.
        "/bfd_instance" | "/garp_group" | "/SSL" | "/track_group" => return None,
        other => panic!("no table for block path {other}: add it to this test"),
    })
}

#[test]
fn every_keepalived_keyword_is_known() {
    let data = include_str!("data/keepalived-keywords.tsv");
    let mut missing = Vec::new();
    let mut checked = 0;
    for line in data
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (path, kw) = line.split_once('\t').expect("PATH<TAB>KEYWORD");
        if let Some(known) = table(path) {
            checked += 1;
            if !known.contains(&kw) {
                missing.push(format!("{path} {kw}"));
            }
        }
    }
    assert!(checked > 450, "only {checked} keywords checked");
    assert!(
        missing.is_empty(),
        "keepalived keywords unknown to kaconf:\n{}",
        missing.join("\n")
    );
}
