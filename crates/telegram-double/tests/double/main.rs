//! The one integration-test binary of telegram-double: the spec checker against real Bot API
//! calls a payment bot makes, and the server as farthing will use it (over HTTP).

mod server;
mod validator;
