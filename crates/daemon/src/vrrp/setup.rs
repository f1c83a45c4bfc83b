//! What the instances run on: their sockets, announcers, the VRID index
//! and the sync groups.

use super::{
    announce, Context, Family, HashMap, Instance, InstanceSpec, Result, Router, VrrpSocket,
};

/// Opens the gratuitous ARP / NA sender of each interface `spec`'s
/// addresses live on, where it is the first instance there. Without one the
/// instance still runs (and says so).
pub(super) fn open_announcer(
    announcers: &mut HashMap<String, announce::Announcer>,
    spec: &InstanceSpec,
) {
    for ifname in spec.address_interfaces() {
        if let std::collections::hash_map::Entry::Vacant(slot) = announcers.entry(ifname.to_owned())
        {
            match announce::Announcer::open(ifname) {
                Ok(a) => {
                    slot.insert(a);
                }
                Err(e) => tracing::warn!(
                    "({}) no gratuitous ARP / unsolicited NA on {ifname}: {e}",
                    spec.name,
                ),
            }
        }
    }
}

/// The index of the socket `spec` sends and receives on, opened if it is the
/// first instance on its interface and address family.
pub(super) fn socket_for(sockets: &mut Vec<VrrpSocket>, spec: &InstanceSpec) -> Result<usize> {
    let ifname = spec.advert_interface();
    socket_on(sockets, ifname, Family::of(&spec.engine.primary))
        .with_context(|| format!("({}) VRRP socket on {ifname}", spec.name))
}

/// (socket, VRID) → instance, over every socket an instance hears on.
pub(super) fn vrid_index(instances: &[Instance]) -> HashMap<(usize, u8), usize> {
    instances
        .iter()
        .enumerate()
        .flat_map(|(i, inst)| {
            let vrid = inst.spec.engine.vrid;
            std::iter::once(inst.socket)
                .chain(inst.heartbeat.iter().map(|h| h.1))
                .map(move |si| ((si, vrid), i))
        })
        .collect()
}

/// The sockets of `spec`'s heartbeat paths, with our address on each.
pub(super) fn heartbeat_sockets(
    sockets: &mut Vec<VrrpSocket>,
    spec: &InstanceSpec,
) -> Result<Vec<(std::net::IpAddr, usize)>> {
    let mut out = Vec::new();
    for (ifname, local, _) in spec.guard.iter().flat_map(|g| &g.heartbeat) {
        let si = socket_on(sockets, ifname, Family::of(local))
            .with_context(|| format!("({}) heartbeat path on {ifname}", spec.name))?;
        out.push((*local, si));
    }
    Ok(out)
}

/// The socket of `family` on `ifname`, opened if it is the first.
pub(super) fn socket_on(
    sockets: &mut Vec<VrrpSocket>,
    ifname: &str,
    family: Family,
) -> Result<usize> {
    if let Some(i) = sockets
        .iter()
        .position(|s| s.ifname == ifname && s.family() == family)
    {
        return Ok(i);
    }
    sockets.push(VrrpSocket::open(ifname, family)?);
    Ok(sockets.len() - 1)
}

/// The instances of each `vrrp_sync_group`, and the group of each instance.
pub(super) fn sync_groups(
    config: &kaconf::Config,
    instances: &[Instance],
) -> (Vec<Vec<usize>>, Vec<Option<usize>>) {
    let mut groups = Vec::new();
    let mut group_of = vec![None; instances.len()];
    for g in &config.sync_groups {
        let names = g.body.group.iter().flat_map(|l| &l.0).flat_map(|n| &n.0);
        let idx: Vec<usize> = names
            .filter_map(|n| instances.iter().position(|i| i.spec.name == *n))
            .filter(|i| group_of[*i].is_none())
            .collect();
        for i in &idx {
            group_of[*i] = Some(groups.len());
        }
        groups.push(idx);
    }
    (groups, group_of)
}

/// The instances of one sync group, as the engine's group rules see them.
pub(super) struct GroupView<'a> {
    pub(super) instances: &'a mut Vec<Instance>,
    pub(super) idx: &'a [usize],
}

impl vrrp::sync::Members for GroupView<'_> {
    fn len(&self) -> usize {
        self.idx.len()
    }
    fn member(&mut self, i: usize) -> &mut Router {
        &mut self.instances[self.idx[i]].router
    }
    fn member_ref(&self, i: usize) -> &Router {
        &self.instances[self.idx[i]].router
    }
}
