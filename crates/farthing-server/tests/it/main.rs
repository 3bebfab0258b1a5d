//! farthing-server's integration tests, one binary (each test binary links the whole server,
//! which costs more than the tests themselves on a small machine). Each module is one area;
//! [`support`] holds the shared harness.

mod api;
mod bot;
mod bot_commands;
mod cards;
mod checkout_browser;
mod dashboard;
mod first_week;
mod instances;
mod lightning;
mod openapi;
mod python_client;
mod risk;
mod security;
mod settlement;
mod stars;
mod stars_reconcile;
mod step_up;
mod support;
mod ton;
mod webapp;
mod webapp_browser;
mod webhooks;
