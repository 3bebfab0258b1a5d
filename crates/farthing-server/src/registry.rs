//! The rails this server runs: one registration line each (see "How to add a rail" in
//! ARCHITECTURE.md). `register_rails!` makes the enum over their adapters, the dispatch of the
//! rail interface over it, and [`Rails`], which the service reaches rails through
//! ([`farthing_app::rail::RailSet`]).

use farthing_app::rail::{RailAdapter, RailRefund, RailRefunded, RailSet, RailStatus, Task};
use farthing_app::{App, AppError, Mode};
use farthing_core::invoice::Invoice;
use farthing_core::{MerchantId, Rail};
use tokio::sync::watch;

use crate::config::Config;

/// Declares the registered rails: `Variant(Type) = constructor(config)`, in the order invoices
/// list them by default.
macro_rules! register_rails {
    ($($variant:ident($adapter:ty) = |$config:ident, $shared:ident| $make:expr;)+) => {
        /// One registered rail's adapter.
        #[derive(Clone)]
        pub enum AnyRail {
            $(
                #[allow(missing_docs)]
                $variant($adapter),
            )+
        }

        /// Builds every registered rail from the configuration.
        fn build(config: &Config, shared: &Shared) -> Vec<AnyRail> {
            vec![$({
                let ($config, $shared) = (config, shared);
                AnyRail::$variant($make)
            }),+]
        }

        impl AnyRail {
            /// Which rail this is.
            pub fn rail(&self) -> Rail {
                match self { $(AnyRail::$variant(adapter) => adapter.rail()),+ }
            }

            fn offer(
                &self,
                app: &App,
                mode: Mode,
                merchant: MerchantId,
            ) -> Result<Option<farthing_app::rail::Carries>, AppError> {
                match self { $(AnyRail::$variant(adapter) => adapter.offer(app, mode, merchant)),+ }
            }

            async fn instructions(
                &self,
                app: &App,
                mode: Mode,
                invoice: &Invoice,
            ) -> Result<Option<String>, AppError> {
                match self {
                    $(AnyRail::$variant(adapter) => adapter.instructions(app, mode, invoice).await),+
                }
            }

            async fn refund(
                &self,
                app: &App,
                mode: Mode,
                request: RailRefund,
            ) -> Result<RailRefunded, AppError> {
                match self {
                    $(AnyRail::$variant(adapter) => adapter.refund(app, mode, request).await),+
                }
            }

            async fn status(
                &self,
                app: &App,
                mode: Mode,
                merchant: MerchantId,
            ) -> Result<Option<RailStatus>, AppError> {
                match self {
                    $(AnyRail::$variant(adapter) => adapter.status(app, mode, merchant).await),+
                }
            }

            /// Checks a configuration given as JSON (`PUT /v1/rails/{rail}`) with the rail's own
            /// typed parser (`parse`: the HTTP layer's checked-body reader) and connects it.
            pub async fn connect<P>(
                &self,
                app: &App,
                mode: Mode,
                merchant: MerchantId,
                parse: P,
            ) -> Result<farthing_app::rail::Connected, P::Error>
            where
                P: ConfigParser,
            {
                match self {
                    $(AnyRail::$variant(adapter) => {
                        let config = parse.parse::<<$adapter as RailAdapter>::Config>()?;
                        Ok(adapter.connect(app, mode, merchant, config).await?)
                    }),+
                }
            }

            fn tasks(&self, app: &App, shutdown: watch::Receiver<bool>) -> Vec<Task> {
                match self { $(AnyRail::$variant(adapter) => adapter.tasks(app, shutdown)),+ }
            }

            async fn edit_subscription(
                &self,
                app: &App,
                mode: Mode,
                subscription: &farthing_store::Subscription,
                canceled: bool,
            ) -> Result<(), AppError> {
                match self {
                    $(AnyRail::$variant(adapter) => {
                        adapter.edit_subscription(app, mode, subscription, canceled).await
                    }),+
                }
            }
        }
    };
}

/// Reads a rail's typed configuration from a request (the HTTP layer's checked JSON body).
pub trait ConfigParser {
    /// The caller's error (the service's errors convert into it).
    type Error: From<AppError>;
    /// Parses into `T`, or the caller's error for a bad body.
    fn parse<T: serde::de::DeserializeOwned>(self) -> Result<T, Self::Error>;
}

/// What several rails share (the Stars and card rails sell through the same bots).
struct Shared {
    telegram: crate::rails::telegram::TelegramRails,
}

register_rails! {
    Balance(farthing_app::rails::BalanceRail) = |_config, _shared| farthing_app::rails::BalanceRail;
    Sandbox(farthing_app::rails::SandboxRail) = |_config, _shared| farthing_app::rails::SandboxRail;
    Stars(crate::rails::telegram::stars::StarsRail) = |_config, shared| {
        crate::rails::telegram::stars::StarsRail::new(shared.telegram.clone())
    };
    Lightning(crate::rails::lightning::LightningRail) = |config, _shared| {
        crate::rails::lightning::LightningRail::new(config.lightning.clone(), config.base_url())
    };
    Card(crate::rails::telegram::card::CardRail) = |_config, shared| {
        crate::rails::telegram::card::CardRail::new(shared.telegram.clone())
    };
    Ton(crate::rails::ton::TonRail) = |config, _shared| crate::rails::ton::TonRail::new(config.ton.clone());
}

/// Every registered rail of this server.
#[derive(Clone)]
pub struct Rails {
    all: Vec<AnyRail>,
}

impl Rails {
    /// The rails of `config`.
    pub fn new(config: &Config) -> Rails {
        let shared = Shared {
            telegram: crate::rails::telegram::TelegramRails::new(
                config.telegram.clone(),
                config.base_url(),
            ),
        };
        Rails {
            all: build(config, &shared),
        }
    }

    /// The adapter of `rail`, if registered.
    pub fn get(&self, rail: Rail) -> Option<&AnyRail> {
        self.all.iter().find(|adapter| adapter.rail() == rail)
    }

    /// Every registered adapter, in order.
    pub fn all(&self) -> &[AnyRail] {
        &self.all
    }

    /// Wakes every rail's background work to look at the configured merchants again (one was
    /// configured, possibly through another instance).
    pub fn wake(&self) {
        if let Some(telegram) = self.telegram() {
            telegram.bots_changed().notify_one();
        }
        if let Some(lightning) = self.lightning() {
            lightning.nodes().changed.notify_one();
        }
        if let Some(ton) = self.ton() {
            ton.watcher().wake();
        }
    }

    /// The Telegram part of the Stars and card rails.
    pub fn telegram(&self) -> Option<&crate::rails::telegram::TelegramRails> {
        self.all.iter().find_map(|adapter| match adapter {
            AnyRail::Stars(stars) => Some(stars.telegram()),
            _ => None,
        })
    }

    /// The Lightning rail.
    pub fn lightning(&self) -> Option<&crate::rails::lightning::LightningRail> {
        self.all.iter().find_map(|adapter| match adapter {
            AnyRail::Lightning(lightning) => Some(lightning),
            _ => None,
        })
    }

    /// The TON rail.
    pub fn ton(&self) -> Option<&crate::rails::ton::TonRail> {
        self.all.iter().find_map(|adapter| match adapter {
            AnyRail::Ton(ton) => Some(ton),
            _ => None,
        })
    }

    /// Every rail's background work, each until `shutdown`.
    pub fn tasks(&self, app: &App, shutdown: &watch::Receiver<bool>) -> Vec<Task> {
        self.all
            .iter()
            .flat_map(|adapter| adapter.tasks(app, shutdown.clone()))
            .collect()
    }
}

impl RailSet for Rails {
    fn registered(&self) -> Vec<Rail> {
        self.all.iter().map(AnyRail::rail).collect()
    }

    fn offer(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
        rail: Rail,
    ) -> Result<Option<farthing_app::rail::Carries>, AppError> {
        match self.get(rail) {
            Some(adapter) => adapter.offer(app, mode, merchant),
            None => Ok(None),
        }
    }

    async fn instructions(
        &self,
        app: &App,
        mode: Mode,
        rail: Rail,
        invoice: &Invoice,
    ) -> Result<Option<String>, AppError> {
        match self.get(rail) {
            Some(adapter) => adapter.instructions(app, mode, invoice).await,
            None => Ok(None),
        }
    }

    async fn refund(
        &self,
        app: &App,
        mode: Mode,
        rail: Rail,
        request: RailRefund,
    ) -> Result<RailRefunded, AppError> {
        match self.get(rail) {
            Some(adapter) => adapter.refund(app, mode, request).await,
            None => Err(AppError::invalid(
                "rail_refund_unsupported",
                format!("the {rail} rail is not available on this server"),
            )
            .param("destination")),
        }
    }

    async fn edit_subscription(
        &self,
        app: &App,
        mode: Mode,
        rail: Rail,
        subscription: &farthing_store::Subscription,
        canceled: bool,
    ) -> Result<(), AppError> {
        match self.get(rail) {
            Some(adapter) => {
                adapter
                    .edit_subscription(app, mode, subscription, canceled)
                    .await
            }
            None => Err(AppError::invalid(
                "rail_not_configured",
                format!("the {rail} rail is not available on this server"),
            )),
        }
    }

    async fn status(
        &self,
        app: &App,
        mode: Mode,
        merchant: MerchantId,
        rail: Rail,
    ) -> Result<Option<RailStatus>, AppError> {
        match self.get(rail) {
            Some(adapter) => adapter.status(app, mode, merchant).await,
            None => Ok(None),
        }
    }
}
