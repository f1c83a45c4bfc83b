//! Scheduling algorithms and the data planes (proxy, nftables, IPVS) behind one
//! trait. Filled in by issues #8 and #9.
