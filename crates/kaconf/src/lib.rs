//! keepalived.conf: lexer, parser into a typed model, validation and
//! diagnostics with `file:line:col`. Filled in by issue #4.
