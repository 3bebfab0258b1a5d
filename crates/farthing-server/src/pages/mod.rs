//! The pages payers and merchants see: the checkout page (`/pay/{invoice}`, also the bot's Mini
//! App), the Mini App's session and one-tap pay (`/webapp/…`), and the dashboard's sign-in
//! (`/dashboard/…`).

pub mod checkout;
pub mod dashboard;
pub mod texts;
pub mod webapp;
