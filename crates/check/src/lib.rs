//! Health checkers (TCP, HTTP, HTTPS, ping, UDP, MISC, DNS, SMTP, FILE) and the
//! check scheduler. Filled in by issue #7.
