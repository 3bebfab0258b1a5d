//! The checkout page's words in the five languages the bot and the Mini App speak (English,
//! French, German, Persian — right to left — and Russian), chosen by `?lang=` or the browser's
//! `Accept-Language`.

use farthing_core::Rail;
use serde::Serialize;

/// One language's texts of the page.
#[derive(Debug, Serialize)]
pub struct PageTexts {
    /// `en`, `fr`, `de`, `fa`, `ru`.
    pub lang: &'static str,
    /// `ltr` or `rtl`.
    pub dir: &'static str,
    pub pay_with: &'static str,
    pub test_mode: &'static str,
    pub sandbox: &'static str,
    pub sandbox_note: &'static str,
    pub copy: &'static str,
    pub copied: &'static str,
    pub selected: &'static str,
    pub open_in_wallet: &'static str,
    pub pay_with_wallet: &'static str,
    pub confirming: &'static str,
    pub wallet_failed: &'static str,
    pub ln_unavailable: &'static str,
    pub try_again: &'static str,
    pub ln_impossible: &'static str,
    pub qr_too_long: &'static str,
    /// TON section: the labels of the address, amount and comment, and the comment warning.
    pub ton_address: &'static str,
    pub ton_amount: &'static str,
    pub ton_comment: &'static str,
    pub ton_comment_warning: &'static str,
    pub expires_in: &'static str,
    pub any_amount_from: &'static str,
    pub you_choose: &'static str,
    pub receipt: &'static str,
    pub invoice: &'static str,
    pub amount: &'static str,
    pub paid_at: &'static str,
    pub paid_with: &'static str,
    pub merchant: &'static str,
    pub back_to_shop: &'static str,
    pub expired_next: &'static str,
    pub balance_in_telegram: &'static str,
    pub balance_nowhere: &'static str,
    pub terms: &'static str,
    pub refund_policy: &'static str,
    pub contacts: &'static str,
    /// Rail names by rail, for the script.
    pub rail_names: RailNames,
    /// Status labels, by status.
    pub status: Statuses,
    /// Human rail names.
    #[serde(skip)]
    rails: [&'static str; 6],
}

/// Rail names by rail code.
#[derive(Debug, Serialize)]
pub struct RailNames {
    pub stars: &'static str,
    pub card: &'static str,
    pub lightning: &'static str,
    pub balance: &'static str,
    pub sandbox: &'static str,
    pub ton: &'static str,
}

/// Status labels.
#[derive(Debug, Serialize)]
pub struct Statuses {
    pub open: &'static str,
    pub paid: &'static str,
    pub expired: &'static str,
    pub canceled: &'static str,
    pub partially_refunded: &'static str,
    pub refunded: &'static str,
}

impl PageTexts {
    /// The label of `status` (`open`, `paid`, …).
    pub fn status_label(&self, status: &str) -> &'static str {
        match status {
            "open" => self.status.open,
            "paid" => self.status.paid,
            "expired" => self.status.expired,
            "canceled" => self.status.canceled,
            "partially_refunded" => self.status.partially_refunded,
            _ => self.status.refunded,
        }
    }

    /// The name a payer knows `rail` by.
    pub fn rail(&self, rail: Rail) -> &'static str {
        match rail {
            Rail::Stars => self.rails[0],
            Rail::Card => self.rails[1],
            Rail::Lightning => self.rails[2],
            Rail::Balance => self.rails[3],
            Rail::Sandbox => self.rails[4],
            _ => self.rails[5],
        }
    }
}

const EN: PageTexts = PageTexts {
    lang: "en",
    dir: "ltr",
    pay_with: "Pay with",
    test_mode: "TEST MODE",
    sandbox: "Pay (sandbox)",
    sandbox_note: "Test mode: no real money moves.",
    copy: "Copy",
    copied: "Copied",
    selected: "Selected",
    open_in_wallet: "Open in wallet",
    pay_with_wallet: "Pay with wallet",
    confirming: "Paid, confirming…",
    wallet_failed: "The wallet did not pay: ",
    ln_unavailable: "Lightning is unavailable right now,",
    try_again: "try again",
    ln_impossible: "This invoice can't be paid with Lightning.",
    qr_too_long: "This invoice is too long for a QR code: copy it instead.",
    ton_address: "Address",
    ton_amount: "Amount",
    ton_comment: "Comment (required)",
    ton_comment_warning: "Write this comment exactly: it is how your payment finds this order. Some exchanges and custodial wallets drop comments, so pay from your own wallet.",
    expires_in: "expires in",
    any_amount_from: "Any amount from",
    you_choose: "you choose",
    receipt: "Receipt",
    invoice: "Invoice",
    amount: "Amount",
    paid_at: "Paid at",
    paid_with: "Paid with",
    merchant: "Merchant",
    back_to_shop: "Back to the shop",
    expired_next: "This invoice has expired and can no longer be paid. Go back to the shop to get a new one.",
    balance_in_telegram: "This invoice is paid from your prepaid balance, in Telegram:",
    balance_nowhere: "This invoice is paid from a prepaid balance, which this page cannot reach. Ask the seller for another way to pay.",
    terms: "Terms",
    refund_policy: "Refund policy",
    contacts: "Contact",
    rail_names: RailNames {
        stars: "Telegram Stars",
        card: "Card",
        lightning: "Lightning",
        balance: "Balance",
        sandbox: "Sandbox (test)",
        ton: "TON",
    },
    status: Statuses {
        open: "Awaiting payment",
        paid: "Paid ✓",
        expired: "Expired",
        canceled: "Canceled",
        partially_refunded: "Partly refunded",
        refunded: "Refunded",
    },
    rails: [
        "Telegram Stars",
        "Card",
        "Lightning",
        "Balance",
        "Sandbox (test)",
        "TON",
    ],
};

const FR: PageTexts = PageTexts {
    lang: "fr",
    dir: "ltr",
    pay_with: "Payer avec",
    test_mode: "MODE TEST",
    sandbox: "Payer (bac à sable)",
    sandbox_note: "Mode test : aucun argent réel ne circule.",
    copy: "Copier",
    copied: "Copié",
    selected: "Sélectionné",
    open_in_wallet: "Ouvrir dans le portefeuille",
    pay_with_wallet: "Payer avec le portefeuille",
    confirming: "Payé, confirmation…",
    wallet_failed: "Le portefeuille n'a pas payé : ",
    ln_unavailable: "Lightning est indisponible pour le moment,",
    try_again: "réessayer",
    ln_impossible: "Cette facture ne peut pas être payée avec Lightning.",
    qr_too_long: "Cette facture est trop longue pour un QR code : copiez-la.",
    ton_address: "Adresse",
    ton_amount: "Montant",
    ton_comment: "Commentaire (obligatoire)",
    ton_comment_warning: "Écrivez ce commentaire exactement : c’est ainsi que votre paiement retrouve cette commande. Certaines plateformes d’échange et portefeuilles dépositaires suppriment les commentaires : payez depuis votre propre portefeuille.",
    expires_in: "expire dans",
    any_amount_from: "Montant libre à partir de",
    you_choose: "au choix",
    receipt: "Reçu",
    invoice: "Facture",
    amount: "Montant",
    paid_at: "Payé le",
    paid_with: "Payé avec",
    merchant: "Marchand",
    back_to_shop: "Retour à la boutique",
    expired_next: "Cette facture a expiré et ne peut plus être payée. Retournez à la boutique pour en obtenir une nouvelle.",
    balance_in_telegram: "Cette facture se paie avec votre solde prépayé, dans Telegram :",
    balance_nowhere: "Cette facture se paie avec un solde prépayé, que cette page ne peut pas atteindre. Demandez au vendeur un autre moyen de paiement.",
    terms: "Conditions",
    refund_policy: "Politique de remboursement",
    contacts: "Contact",
    rail_names: RailNames {
        stars: "Telegram Stars",
        card: "Carte",
        lightning: "Lightning",
        balance: "Solde",
        sandbox: "Bac à sable (test)",
        ton: "TON",
    },
    status: Statuses {
        open: "En attente de paiement",
        paid: "Payé ✓",
        expired: "Expirée",
        canceled: "Annulée",
        partially_refunded: "Remboursée en partie",
        refunded: "Remboursée",
    },
    rails: [
        "Telegram Stars",
        "Carte",
        "Lightning",
        "Solde",
        "Bac à sable (test)",
        "TON",
    ],
};

const DE: PageTexts = PageTexts {
    lang: "de",
    dir: "ltr",
    pay_with: "Bezahlen mit",
    test_mode: "TESTMODUS",
    sandbox: "Bezahlen (Sandbox)",
    sandbox_note: "Testmodus: Es fließt kein echtes Geld.",
    copy: "Kopieren",
    copied: "Kopiert",
    selected: "Markiert",
    open_in_wallet: "In der Wallet öffnen",
    pay_with_wallet: "Mit der Wallet bezahlen",
    confirming: "Bezahlt, wird bestätigt…",
    wallet_failed: "Die Wallet hat nicht bezahlt: ",
    ln_unavailable: "Lightning ist gerade nicht verfügbar,",
    try_again: "erneut versuchen",
    ln_impossible: "Diese Rechnung kann nicht mit Lightning bezahlt werden.",
    qr_too_long: "Diese Rechnung ist zu lang für einen QR-Code: bitte kopieren.",
    ton_address: "Adresse",
    ton_amount: "Betrag",
    ton_comment: "Kommentar (erforderlich)",
    ton_comment_warning: "Schreiben Sie genau diesen Kommentar: Daran findet Ihre Zahlung diese Bestellung. Manche Börsen und verwahrende Wallets entfernen Kommentare, zahlen Sie daher aus Ihrer eigenen Wallet.",
    expires_in: "läuft ab in",
    any_amount_from: "Beliebiger Betrag ab",
    you_choose: "frei wählbar",
    receipt: "Beleg",
    invoice: "Rechnung",
    amount: "Betrag",
    paid_at: "Bezahlt am",
    paid_with: "Bezahlt mit",
    merchant: "Händler",
    back_to_shop: "Zurück zum Shop",
    expired_next: "Diese Rechnung ist abgelaufen und kann nicht mehr bezahlt werden. Gehen Sie zurück zum Shop, um eine neue zu erhalten.",
    balance_in_telegram: "Diese Rechnung wird aus Ihrem Prepaid-Guthaben bezahlt, in Telegram:",
    balance_nowhere: "Diese Rechnung wird aus einem Prepaid-Guthaben bezahlt, das diese Seite nicht erreicht. Fragen Sie den Verkäufer nach einem anderen Zahlungsweg.",
    terms: "Bedingungen",
    refund_policy: "Erstattungsrichtlinie",
    contacts: "Kontakt",
    rail_names: RailNames {
        stars: "Telegram Stars",
        card: "Karte",
        lightning: "Lightning",
        balance: "Guthaben",
        sandbox: "Sandbox (Test)",
        ton: "TON",
    },
    status: Statuses {
        open: "Zahlung ausstehend",
        paid: "Bezahlt ✓",
        expired: "Abgelaufen",
        canceled: "Storniert",
        partially_refunded: "Teilweise erstattet",
        refunded: "Erstattet",
    },
    rails: [
        "Telegram Stars",
        "Karte",
        "Lightning",
        "Guthaben",
        "Sandbox (Test)",
        "TON",
    ],
};

const FA: PageTexts = PageTexts {
    lang: "fa",
    dir: "rtl",
    pay_with: "پرداخت با",
    test_mode: "حالت آزمایشی",
    sandbox: "پرداخت (آزمایشی)",
    sandbox_note: "حالت آزمایشی: هیچ پول واقعی جابه‌جا نمی‌شود.",
    copy: "کپی",
    copied: "کپی شد",
    selected: "انتخاب شد",
    open_in_wallet: "باز کردن در کیف پول",
    pay_with_wallet: "پرداخت با کیف پول",
    confirming: "پرداخت شد، در حال تأیید…",
    wallet_failed: "کیف پول پرداخت نکرد: ",
    ln_unavailable: "لایتنینگ اکنون در دسترس نیست،",
    try_again: "دوباره تلاش کنید",
    ln_impossible: "این صورتحساب با لایتنینگ قابل پرداخت نیست.",
    qr_too_long: "این صورتحساب برای کد QR بیش از حد طولانی است: آن را کپی کنید.",
    ton_address: "نشانی",
    ton_amount: "مبلغ",
    ton_comment: "توضیح (الزامی)",
    ton_comment_warning: "این توضیح را دقیقاً بنویسید: پرداخت شما با آن به این سفارش می‌رسد. برخی صرافی‌ها و کیف‌پول‌های امانی توضیح را حذف می‌کنند؛ از کیف‌پول خودتان پرداخت کنید.",
    expires_in: "منقضی می‌شود در",
    any_amount_from: "هر مبلغی از",
    you_choose: "به انتخاب شما",
    receipt: "رسید",
    invoice: "صورتحساب",
    amount: "مبلغ",
    paid_at: "زمان پرداخت",
    paid_with: "پرداخت با",
    merchant: "فروشنده",
    back_to_shop: "بازگشت به فروشگاه",
    expired_next: "مهلت این صورت‌حساب تمام شده و دیگر قابل پرداخت نیست. برای دریافت صورت‌حساب جدید به فروشگاه برگردید.",
    balance_in_telegram: "این صورت‌حساب از موجودی پیش‌پرداخت شما در تلگرام پرداخت می‌شود:",
    balance_nowhere: "این صورت‌حساب از موجودی پیش‌پرداخت پرداخت می‌شود که این صفحه به آن دسترسی ندارد. از فروشنده راه دیگری برای پرداخت بخواهید.",
    terms: "شرایط",
    refund_policy: "سیاست بازپرداخت",
    contacts: "تماس",
    rail_names: RailNames {
        stars: "استارز تلگرام",
        card: "کارت",
        lightning: "لایتنینگ",
        balance: "موجودی",
        sandbox: "آزمایشی",
        ton: "TON",
    },
    status: Statuses {
        open: "در انتظار پرداخت",
        paid: "پرداخت شد ✓",
        expired: "منقضی شده",
        canceled: "لغو شده",
        partially_refunded: "بخشی بازپرداخت شد",
        refunded: "بازپرداخت شد",
    },
    rails: [
        "استارز تلگرام",
        "کارت",
        "لایتنینگ",
        "موجودی",
        "آزمایشی",
        "TON",
    ],
};

const RU: PageTexts = PageTexts {
    lang: "ru",
    dir: "ltr",
    pay_with: "Оплатить через",
    test_mode: "ТЕСТОВЫЙ РЕЖИМ",
    sandbox: "Оплатить (песочница)",
    sandbox_note: "Тестовый режим: настоящие деньги не двигаются.",
    copy: "Копировать",
    copied: "Скопировано",
    selected: "Выделено",
    open_in_wallet: "Открыть в кошельке",
    pay_with_wallet: "Оплатить кошельком",
    confirming: "Оплачено, подтверждение…",
    wallet_failed: "Кошелёк не оплатил: ",
    ln_unavailable: "Lightning сейчас недоступен,",
    try_again: "попробуйте ещё раз",
    ln_impossible: "Этот счёт нельзя оплатить через Lightning.",
    qr_too_long: "Счёт слишком длинный для QR-кода: скопируйте его.",
    ton_address: "Адрес",
    ton_amount: "Сумма",
    ton_comment: "Комментарий (обязательно)",
    ton_comment_warning: "Укажите этот комментарий в точности: по нему платёж найдёт этот заказ. Некоторые биржи и кастодиальные кошельки удаляют комментарии, поэтому платите из своего кошелька.",
    expires_in: "истекает через",
    any_amount_from: "Любая сумма от",
    you_choose: "на ваш выбор",
    receipt: "Чек",
    invoice: "Счёт",
    amount: "Сумма",
    paid_at: "Оплачено",
    paid_with: "Способ оплаты",
    merchant: "Продавец",
    back_to_shop: "Вернуться в магазин",
    expired_next: "Срок этого счёта истёк, оплатить его больше нельзя. Вернитесь в магазин, чтобы получить новый.",
    balance_in_telegram: "Этот счёт оплачивается с вашего предоплаченного баланса в Telegram:",
    balance_nowhere: "Этот счёт оплачивается с предоплаченного баланса, недоступного на этой странице. Попросите продавца о другом способе оплаты.",
    terms: "Условия",
    refund_policy: "Политика возврата",
    contacts: "Контакты",
    rail_names: RailNames {
        stars: "Telegram Stars",
        card: "Карта",
        lightning: "Lightning",
        balance: "Баланс",
        sandbox: "Песочница (тест)",
        ton: "TON",
    },
    status: Statuses {
        open: "Ожидает оплаты",
        paid: "Оплачено ✓",
        expired: "Истёк",
        canceled: "Отменён",
        partially_refunded: "Частично возвращён",
        refunded: "Возвращён",
    },
    rails: [
        "Telegram Stars",
        "Карта",
        "Lightning",
        "Баланс",
        "Песочница (тест)",
        "TON",
    ],
};

fn by_code(code: &str) -> Option<&'static PageTexts> {
    let primary = code
        .split(['-', '_'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match primary.as_str() {
        "en" => Some(&EN),
        "fr" => Some(&FR),
        "de" => Some(&DE),
        "fa" => Some(&FA),
        "ru" => Some(&RU),
        _ => None,
    }
}

/// The page's language: `?lang=` when it is one of ours, else the first of the browser's
/// `Accept-Language` (by quality) that is, else English.
pub fn choose(lang: Option<&str>, accept_language: Option<&str>) -> &'static PageTexts {
    if let Some(texts) = lang.and_then(by_code) {
        return texts;
    }
    let mut wanted: Vec<(u16, usize, &str)> = accept_language
        .unwrap_or_default()
        .split(',')
        .enumerate()
        .filter_map(|(i, part)| {
            let mut pieces = part.split(';');
            let tag = pieces.next()?.trim();
            let quality = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            // Thousandths, so that the order is exact; ties keep the header's order.
            let q = (quality.clamp(0.0, 1.0) * 1000.0) as u16;
            (q > 0 && !tag.is_empty()).then_some((q, i, tag))
        })
        .collect();
    wanted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    wanted
        .iter()
        .find_map(|(_, _, tag)| by_code(tag))
        .unwrap_or(&EN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_comes_from_the_query_then_the_browser_then_english() {
        assert_eq!(choose(Some("fa"), Some("de")).lang, "fa");
        assert_eq!(choose(Some("xx"), Some("de-CH, en;q=0.5")).lang, "de");
        assert_eq!(choose(None, Some("it, ru;q=0.8, fr;q=0.9")).lang, "fr");
        assert_eq!(choose(None, Some("ja, zh;q=0.5")).lang, "en");
        assert_eq!(choose(None, Some("fr;q=0, ru")).lang, "ru");
        assert_eq!(choose(None, None).lang, "en");
        assert_eq!(choose(Some("fa"), None).dir, "rtl");
        assert_eq!(choose(Some("fr"), None).rail(Rail::Balance), "Solde");
    }
}
