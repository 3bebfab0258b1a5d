//! Risk rules (SPEC S1, S2): a merchant's limits, new-customer rules, velocity and block lists
//! as plain data, and [`evaluate`], the pure function that decides one payment attempt.
//!
//! No I/O and no clock: the caller gathers the facts (what the customer spent in the last 24
//! hours, how many attempts it made in the last minute, …) into an [`Attempt`], and records the
//! [`Decision`]. Every rule only ever refuses or asks for more: adding a rule, lowering a limit
//! or raising the amount never turns a refusal into an allowance (property-tested below).

use std::net::IpAddr;

use crate::Currency;

/// The rolling window of the daily limits, in nanoseconds (24 hours, not a calendar day: no
/// time zone decides when a limit resets).
pub const DAY_NS: u64 = 24 * 3600 * 1_000_000_000;

/// The window of the velocity rules, in nanoseconds.
pub const MINUTE_NS: u64 = 60 * 1_000_000_000;

/// A merchant's rules. The default has none: every attempt is allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RiskRules {
    /// Limits per currency (at most one entry per currency).
    pub limits: Vec<Limit>,
    /// Who counts as new (the limits' `new_customer_per_payment_max` applies to them).
    pub new_customers: Option<NewCustomers>,
    /// Attempts per minute.
    pub velocity: Velocity,
    /// Payers refused whatever they pay.
    pub block: BlockLists,
}

/// The limits of one currency, in its minor units. `None` = no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// The currency these limits are in.
    pub currency: Currency,
    /// The largest single payment.
    pub per_payment_max: Option<u64>,
    /// The most one customer may pay in 24 hours, this payment included.
    pub per_customer_day_max: Option<u64>,
    /// The largest single payment of a new customer ([`NewCustomers`]).
    pub new_customer_per_payment_max: Option<u64>,
    /// Payments above this amount need step-up authentication.
    pub step_up_above: Option<u64>,
}

/// A customer is new while both hold: created less than `days` ago and fewer than `payments`
/// payments made. A zero disables that half (`days: 0` = age never makes one new).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewCustomers {
    /// Days since the customer was first seen.
    pub days: u32,
    /// Payments made so far.
    pub payments: u32,
}

/// Velocity limits per payer, over the last minute. `None` = no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Velocity {
    /// Attempts (allowed or not), this one included.
    pub attempts_per_minute: Option<u32>,
    /// Failed attempts (refused by a rule or by the balance) before this one.
    pub failures_per_minute: Option<u32>,
}

/// Block lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockLists {
    /// Telegram user ids.
    pub telegram_users: Vec<i64>,
    /// Wallet addresses or node keys, compared exactly after trimming and lower-casing.
    pub wallets: Vec<String>,
    /// Client addresses and networks.
    pub networks: Vec<IpNet>,
}

/// An IP network: an address and a prefix length (`/32` or `/128` for a single address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `203.0.113.7`, `203.0.113.0/24`, `2001:db8::/32`. The address bits beyond the
    /// prefix must be zero (a typo like `10.0.0.1/8` is refused, not silently widened).
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or network"))?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= bits)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {bits}"))?,
        };
        let net = IpNet { addr, prefix };
        if masked(addr, prefix) != bits_of(addr) {
            return Err(format!(
                "`{text}`: the address has bits set beyond the /{prefix} prefix"
            ));
        }
        Ok(net)
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && masked(ip, self.prefix) == bits_of(self.addr)
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn bits_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn masked(ip: IpAddr, prefix: u8) -> u128 {
    let bits: u32 = if ip.is_ipv4() { 32 } else { 128 };
    let host_bits = bits - u32::from(prefix).min(bits);
    if host_bits >= 128 {
        return 0;
    }
    bits_of(ip) & !((1u128 << host_bits) - 1)
}

/// Where an attempt comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `POST /v1/charges`.
    Charge,
    /// An invoice paid from a balance (API or Mini App).
    BalancePayment,
    /// Telegram's pre-checkout query (Stars, cards).
    PreCheckout,
    /// A payment started in the Mini App.
    MiniApp,
    /// A merchant payout.
    Payout,
}

impl Operation {
    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Charge => "charge",
            Operation::BalancePayment => "balance_payment",
            Operation::PreCheckout => "pre_checkout",
            Operation::MiniApp => "mini_app",
            Operation::Payout => "payout",
        }
    }

    /// The operation named `text`.
    pub fn parse(text: &str) -> Option<Operation> {
        [
            Operation::Charge,
            Operation::BalancePayment,
            Operation::PreCheckout,
            Operation::MiniApp,
            Operation::Payout,
        ]
        .into_iter()
        .find(|operation| operation.as_str() == text)
    }
}

/// What is known about the customer who pays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CustomerFacts {
    /// Nanoseconds since the customer was created (0 for one seen first now).
    pub age_ns: u64,
    /// Payments made so far (the caller may stop counting at the rule's threshold).
    pub payments: u64,
    /// Paid in this attempt's currency in the last 24 hours, before this attempt.
    pub paid_last_day_minor: u64,
}

/// One payment attempt, with the facts the rules read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt<'a> {
    /// What is being done.
    pub operation: Operation,
    /// The amount, in minor units of `currency`.
    pub amount_minor: u64,
    /// The currency.
    pub currency: Currency,
    /// The paying customer, when known.
    pub customer: Option<CustomerFacts>,
    /// The payer's Telegram user, when known.
    pub telegram_user: Option<i64>,
    /// The payer's (or, for a payout, the destination's) wallet address or node key.
    pub wallet: Option<&'a str>,
    /// The client's address, when the buyer's own device sent the request.
    pub ip: Option<IpAddr>,
    /// The payer's earlier attempts in the last minute (not counting this one).
    pub attempts_last_minute: u32,
    /// The payer's failed attempts in the last minute.
    pub failures_last_minute: u32,
    /// Whether step-up authentication was already passed for this attempt.
    pub stepped_up: bool,
}

/// What the rules decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Go ahead.
    Allow,
    /// Go ahead only after step-up authentication.
    StepUp,
    /// Refused.
    Refuse,
}

impl Outcome {
    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::StepUp => "step_up",
            Outcome::Refuse => "refuse",
        }
    }

    /// The outcome named `text`.
    pub fn parse(text: &str) -> Option<Outcome> {
        [Outcome::Allow, Outcome::StepUp, Outcome::Refuse]
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
    }
}

/// A decision with the rule that made it and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allow, step up or refuse.
    pub outcome: Outcome,
    /// The deciding rule (`"none"` for an allowance): `blocked_telegram_user`, `blocked_wallet`,
    /// `blocked_ip`, `velocity_attempts`, `velocity_failures`, `per_payment_max`,
    /// `new_customer_per_payment_max`, `per_customer_day_max`, `step_up_above`.
    pub rule: &'static str,
    /// A sentence for the merchant (never shown to the buyer as is).
    pub reason: String,
}

impl Decision {
    fn allow() -> Decision {
        Decision {
            outcome: Outcome::Allow,
            rule: "none",
            reason: "no rule applies".to_owned(),
        }
    }

    fn refuse(rule: &'static str, reason: String) -> Decision {
        Decision {
            outcome: Outcome::Refuse,
            rule,
            reason,
        }
    }
}

impl RiskRules {
    /// Whether there is nothing to evaluate (callers skip gathering facts then).
    pub fn is_empty(&self) -> bool {
        self == &RiskRules::default()
    }

    /// The limits of `currency`, if any.
    pub fn limit(&self, currency: Currency) -> Option<&Limit> {
        self.limits.iter().find(|limit| limit.currency == currency)
    }

    /// Whether deciding an attempt in `currency` needs the customer's last-day total (a read
    /// the caller can skip otherwise).
    pub fn needs_day_total(&self, currency: Currency) -> bool {
        self.limit(currency)
            .is_some_and(|limit| limit.per_customer_day_max.is_some())
    }

    /// Whether deciding needs the customer's payment count, and up to what number.
    pub fn payments_to_count(&self, currency: Currency) -> Option<u32> {
        let new = self.new_customers?;
        let applies = self
            .limit(currency)
            .is_some_and(|limit| limit.new_customer_per_payment_max.is_some());
        (applies && new.payments > 0).then_some(new.payments)
    }
}

/// Decides `attempt` under `rules`. Refusals come first (block lists, velocity, amounts), then
/// step-up; the first rule that refuses is the one reported.
pub fn evaluate(rules: &RiskRules, attempt: &Attempt<'_>) -> Decision {
    let block = &rules.block;
    if let Some(user) = attempt.telegram_user {
        if block.telegram_users.contains(&user) {
            return Decision::refuse(
                "blocked_telegram_user",
                format!("Telegram user {user} is on the block list"),
            );
        }
    }
    if let Some(wallet) = attempt.wallet {
        let wallet = wallet.trim().to_ascii_lowercase();
        if block.wallets.contains(&wallet) {
            return Decision::refuse(
                "blocked_wallet",
                format!("wallet {wallet} is on the block list"),
            );
        }
    }
    if let Some(ip) = attempt.ip {
        if let Some(net) = block.networks.iter().find(|net| net.contains(ip)) {
            return Decision::refuse(
                "blocked_ip",
                format!("client address {ip} is in blocked network {net}"),
            );
        }
    }
    if let Some(max) = rules.velocity.attempts_per_minute {
        let attempts = u64::from(attempt.attempts_last_minute) + 1;
        if attempts > u64::from(max) {
            return Decision::refuse(
                "velocity_attempts",
                format!("{attempts} attempts in the last minute, at most {max} allowed"),
            );
        }
    }
    if let Some(max) = rules.velocity.failures_per_minute {
        if attempt.failures_last_minute >= max {
            return Decision::refuse(
                "velocity_failures",
                format!(
                    "{} failed attempts in the last minute, at most {max} allowed before a pause",
                    attempt.failures_last_minute
                ),
            );
        }
    }
    let Some(limit) = rules.limit(attempt.currency) else {
        return Decision::allow();
    };
    let (amount, code) = (attempt.amount_minor, attempt.currency.code());
    if let Some(max) = limit.per_payment_max {
        if amount > max {
            return Decision::refuse(
                "per_payment_max",
                format!("{amount} {code} is above the limit of {max} {code} per payment"),
            );
        }
    }
    if let Some(customer) = attempt.customer {
        if let (Some(max), Some(new)) = (limit.new_customer_per_payment_max, rules.new_customers) {
            if amount > max && is_new(&new, &customer) {
                return Decision::refuse(
                    "new_customer_per_payment_max",
                    format!(
                        "{amount} {code} is above the limit of {max} {code} per payment for a new customer"
                    ),
                );
            }
        }
        if let Some(max) = limit.per_customer_day_max {
            let total = customer.paid_last_day_minor.saturating_add(amount);
            if total > max {
                return Decision::refuse(
                    "per_customer_day_max",
                    format!(
                        "the customer would pay {total} {code} in 24 hours, above the limit of {max} {code}"
                    ),
                );
            }
        }
    }
    if let Some(above) = limit.step_up_above {
        if amount > above && !attempt.stepped_up {
            return Decision {
                outcome: Outcome::StepUp,
                rule: "step_up_above",
                reason: format!(
                    "{amount} {code} is above {above} {code}: step-up authentication is required"
                ),
            };
        }
    }
    Decision::allow()
}

fn is_new(rule: &NewCustomers, customer: &CustomerFacts) -> bool {
    let young = rule.days > 0 && customer.age_ns < u64::from(rule.days) * DAY_NS;
    let few = rule.payments > 0 && customer.payments < u64::from(rule.payments);
    // Both halves that are set must hold; a rule with both at zero makes nobody new.
    match (rule.days > 0, rule.payments > 0) {
        (true, true) => young && few,
        (true, false) => young,
        (false, true) => few,
        (false, false) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn attempt(amount_minor: u64) -> Attempt<'static> {
        Attempt {
            operation: Operation::Charge,
            amount_minor,
            currency: Currency::XTR,
            customer: Some(CustomerFacts {
                age_ns: 0,
                payments: 0,
                paid_last_day_minor: 0,
            }),
            telegram_user: Some(7),
            wallet: None,
            ip: None,
            attempts_last_minute: 0,
            failures_last_minute: 0,
            stepped_up: false,
        }
    }

    fn limit(currency: Currency) -> Limit {
        Limit {
            currency,
            per_payment_max: None,
            per_customer_day_max: None,
            new_customer_per_payment_max: None,
            step_up_above: None,
        }
    }

    #[test]
    fn each_rule_decides_with_its_name() {
        let mut rules = RiskRules::default();
        assert_eq!(evaluate(&rules, &attempt(10)).outcome, Outcome::Allow);

        rules.limits.push(Limit {
            per_payment_max: Some(100),
            per_customer_day_max: Some(150),
            new_customer_per_payment_max: Some(50),
            step_up_above: Some(40),
            ..limit(Currency::XTR)
        });
        rules.new_customers = Some(NewCustomers {
            days: 7,
            payments: 3,
        });
        assert_eq!(evaluate(&rules, &attempt(101)).rule, "per_payment_max");
        assert_eq!(
            evaluate(&rules, &attempt(51)).rule,
            "new_customer_per_payment_max"
        );
        let mut old = attempt(90);
        old.customer = Some(CustomerFacts {
            age_ns: 8 * DAY_NS,
            payments: 2,
            paid_last_day_minor: 61,
        });
        assert_eq!(evaluate(&rules, &old).rule, "per_customer_day_max");
        old.customer = Some(CustomerFacts {
            age_ns: 0,
            payments: 3,
            paid_last_day_minor: 60,
        });
        let decision = evaluate(&rules, &old);
        assert_eq!(
            (decision.outcome, decision.rule),
            (Outcome::StepUp, "step_up_above")
        );
        old.stepped_up = true;
        assert_eq!(evaluate(&rules, &old).outcome, Outcome::Allow);
        // Another currency has no limits.
        let mut ton = attempt(1_000_000);
        ton.currency = Currency::TON;
        assert_eq!(evaluate(&rules, &ton).outcome, Outcome::Allow);
    }

    #[test]
    fn block_lists_and_velocity_refuse_first() {
        let mut rules = RiskRules::default();
        rules.block.telegram_users.push(7);
        assert_eq!(evaluate(&rules, &attempt(1)).rule, "blocked_telegram_user");
        rules.block.telegram_users.clear();
        rules.block.wallets.push("uqabc".to_owned());
        let mut a = attempt(1);
        a.wallet = Some(" UQabc ");
        assert_eq!(evaluate(&rules, &a).rule, "blocked_wallet");
        rules
            .block
            .networks
            .push(IpNet::parse("203.0.113.0/24").expect("net"));
        a.wallet = None;
        a.ip = Some("::ffff:203.0.113.9".parse().expect("ip"));
        assert_eq!(evaluate(&rules, &a).rule, "blocked_ip");
        a.ip = Some("203.0.114.1".parse().expect("ip"));
        assert_eq!(evaluate(&rules, &a).outcome, Outcome::Allow);
        rules.velocity = Velocity {
            attempts_per_minute: Some(3),
            failures_per_minute: Some(2),
        };
        a.attempts_last_minute = 2;
        assert_eq!(evaluate(&rules, &a).outcome, Outcome::Allow);
        a.attempts_last_minute = 3;
        assert_eq!(evaluate(&rules, &a).rule, "velocity_attempts");
        a.attempts_last_minute = 0;
        a.failures_last_minute = 2;
        assert_eq!(evaluate(&rules, &a).rule, "velocity_failures");
    }

    #[test]
    fn networks_parse_strictly() {
        assert!(IpNet::parse("10.0.0.1/8").is_err());
        assert!(IpNet::parse("10.0.0.0/33").is_err());
        assert!(IpNet::parse("nope").is_err());
        let all = IpNet::parse("0.0.0.0/0").expect("net");
        assert!(all.contains("8.8.8.8".parse().expect("ip")));
        assert!(!all.contains("2001:db8::1".parse().expect("ip")));
        let v6 = IpNet::parse("2001:db8::/32").expect("net");
        assert!(v6.contains("2001:db8:ffff::1".parse().expect("ip")));
        assert!(!v6.contains("2001:db9::1".parse().expect("ip")));
        let one = IpNet::parse("192.0.2.1").expect("net");
        assert!(one.contains("192.0.2.1".parse().expect("ip")));
        assert!(!one.contains("192.0.2.2".parse().expect("ip")));
        assert_eq!(one.to_string(), "192.0.2.1/32");
    }

    fn any_rules() -> impl Strategy<Value = RiskRules> {
        let opt = || proptest::option::of(0u64..1_000);
        (
            opt(),
            opt(),
            opt(),
            opt(),
            proptest::option::of((0u32..10, 0u32..10)),
            proptest::option::of(0u32..5),
            proptest::option::of(0u32..5),
            proptest::collection::vec(0i64..5, 0..3),
        )
            .prop_map(|(per, day, new, step, newc, att, fail, users)| RiskRules {
                limits: vec![Limit {
                    currency: Currency::XTR,
                    per_payment_max: per,
                    per_customer_day_max: day,
                    new_customer_per_payment_max: new,
                    step_up_above: step,
                }],
                new_customers: newc.map(|(days, payments)| NewCustomers { days, payments }),
                velocity: Velocity {
                    attempts_per_minute: att,
                    failures_per_minute: fail,
                },
                block: BlockLists {
                    telegram_users: users,
                    ..BlockLists::default()
                },
            })
    }

    fn any_attempt() -> impl Strategy<Value = Attempt<'static>> {
        (
            0u64..2_000,
            0u64..20 * DAY_NS,
            0u64..10,
            0u64..2_000,
            0i64..5,
            0u32..6,
            0u32..6,
            any::<bool>(),
        )
            .prop_map(
                |(amount, age, payments, paid, user, att, fail, stepped)| Attempt {
                    customer: Some(CustomerFacts {
                        age_ns: age,
                        payments,
                        paid_last_day_minor: paid,
                    }),
                    telegram_user: Some(user),
                    attempts_last_minute: att,
                    failures_last_minute: fail,
                    stepped_up: stepped,
                    ..attempt(amount)
                },
            )
    }

    proptest! {
        #[test]
        fn no_rules_allow_everything(a in any_attempt()) {
            prop_assert_eq!(evaluate(&RiskRules::default(), &a).outcome, Outcome::Allow);
        }

        #[test]
        fn a_larger_amount_is_never_treated_better(rules in any_rules(), a in any_attempt(), more in 0u64..1_000) {
            let bigger = Attempt { amount_minor: a.amount_minor + more, ..a.clone() };
            prop_assert!(evaluate(&rules, &bigger).outcome >= evaluate(&rules, &a).outcome);
        }

        #[test]
        fn an_allowed_payment_is_within_every_limit(rules in any_rules(), a in any_attempt()) {
            let decision = evaluate(&rules, &a);
            if decision.outcome == Outcome::Allow {
                let limit = rules.limits[0];
                let facts = a.customer.expect("facts");
                prop_assert!(limit.per_payment_max.is_none_or(|max| a.amount_minor <= max));
                prop_assert!(limit.per_customer_day_max.is_none_or(|max| facts.paid_last_day_minor + a.amount_minor <= max));
                prop_assert!(a.stepped_up || limit.step_up_above.is_none_or(|above| a.amount_minor <= above));
                prop_assert!(!rules.block.telegram_users.contains(&a.telegram_user.expect("user")));
            } else {
                prop_assert_ne!(decision.rule, "none");
            }
        }

        #[test]
        fn tighter_rules_never_loosen_a_decision(rules in any_rules(), a in any_attempt(), cut in 0u64..500, user in 0i64..5) {
            let mut tighter = rules.clone();
            let limit = &mut tighter.limits[0];
            for max in [&mut limit.per_payment_max, &mut limit.per_customer_day_max, &mut limit.new_customer_per_payment_max, &mut limit.step_up_above] {
                *max = Some(max.map_or(cut, |max| max.saturating_sub(cut)));
            }
            tighter.block.telegram_users.push(user);
            prop_assert!(evaluate(&tighter, &a).outcome >= evaluate(&rules, &a).outcome);
        }

        #[test]
        fn more_history_of_the_day_never_loosens(rules in any_rules(), a in any_attempt(), extra in 0u64..1_000) {
            let mut busier = a.clone();
            if let Some(facts) = busier.customer.as_mut() {
                facts.paid_last_day_minor += extra;
            }
            busier.attempts_last_minute += 1;
            busier.failures_last_minute += 1;
            prop_assert!(evaluate(&rules, &busier).outcome >= evaluate(&rules, &a).outcome);
        }
    }
}
