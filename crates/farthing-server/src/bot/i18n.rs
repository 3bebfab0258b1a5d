//! The bot's languages (SPEC T3): English, French, German, Persian (right-to-left) and Russian,
//! chosen from the Telegram user's `language_code`; anything else falls back to English.
//!
//! Texts live next to the code that sends them, one array per text in [`Lang::ALL`] order,
//! read with [`Lang::pick`]: adding a text never touches a shared table, and a missing
//! translation is a compile error (the array has five entries or it does not build).

/// A language the bot speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lang {
    /// English (the fallback).
    En,
    /// French.
    Fr,
    /// German.
    De,
    /// Persian, written right to left.
    Fa,
    /// Russian.
    Ru,
}

impl Lang {
    /// Every language, in the order of the text arrays.
    pub const ALL: [Lang; 5] = [Lang::En, Lang::Fr, Lang::De, Lang::Fa, Lang::Ru];

    /// The language of a Telegram `language_code` (an IETF tag such as `de`, `fa-IR`,
    /// `pt-br`); English when absent or not one of ours.
    pub fn from_code(code: Option<&str>) -> Lang {
        let primary = code
            .unwrap_or("en")
            .split(['-', '_'])
            .next()
            .unwrap_or("en")
            .to_ascii_lowercase();
        match primary.as_str() {
            "fr" => Lang::Fr,
            "de" => Lang::De,
            "fa" => Lang::Fa,
            "ru" => Lang::Ru,
            _ => Lang::En,
        }
    }

    /// The two-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
            Lang::De => "de",
            Lang::Fa => "fa",
            Lang::Ru => "ru",
        }
    }

    /// Whether the language is written right to left.
    pub fn is_rtl(self) -> bool {
        self == Lang::Fa
    }

    /// This language's entry of `texts` (in [`Lang::ALL`] order).
    pub fn pick<T: Copy>(self, texts: [T; 5]) -> T {
        match self {
            Lang::En => texts[0],
            Lang::Fr => texts[1],
            Lang::De => texts[2],
            Lang::Fa => texts[3],
            Lang::Ru => texts[4],
        }
    }

    /// `value` as it may stand inside a text of this language: in a right-to-left language,
    /// wrapped in Unicode first-strong isolates (U+2068 … U+2069), so that amounts, dates, ids
    /// and user text keep their own direction and do not reorder the sentence around them.
    pub fn isolate(self, value: &str) -> String {
        if self.is_rtl() {
            format!("\u{2068}{value}\u{2069}")
        } else {
            value.to_owned()
        }
    }

    /// `template` with each `{name}` replaced by its value (isolated, see [`Lang::isolate`]),
    /// in one pass: a value that itself contains `{name}` is never substituted again. A
    /// placeholder without a value stays as written.
    pub fn fill<V: AsRef<str>>(self, template: &str, values: &[(&str, V)]) -> String {
        let mut text = String::with_capacity(template.len() + 16);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            text.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let value = after.find('}').and_then(|close| {
                let name = &after[..close];
                values
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (close, value.as_ref()))
            });
            match value {
                Some((close, value)) => {
                    text.push_str(&self.isolate(value));
                    rest = &after[close + 1..];
                }
                None => {
                    text.push('{');
                    rest = after;
                }
            }
        }
        text.push_str(rest);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_replaces_once_and_isolates_in_right_to_left_languages() {
        assert_eq!(
            Lang::En.fill(
                "Paid {amount} on {date}",
                &[("amount", "5 XTR"), ("date", "2026-12-03")]
            ),
            "Paid 5 XTR on 2026-12-03"
        );
        // A value holding a placeholder is not filled again; unknown placeholders stay.
        assert_eq!(
            Lang::En.fill("{a} and {b} and {c}", &[("a", "{b}"), ("b", "x")]),
            "{b} and x and {c}"
        );
        assert_eq!(Lang::De.fill("{ broken", &[("x", "y")]), "{ broken");
        assert_eq!(
            Lang::Fa.fill("شارژ موجودی شما: {amount}", &[("amount", "50 XTR")]),
            "شارژ موجودی شما: \u{2068}50 XTR\u{2069}"
        );
        assert_eq!(Lang::Fa.isolate("inv_1"), "\u{2068}inv_1\u{2069}");
        assert_eq!(Lang::Ru.isolate("inv_1"), "inv_1");
    }

    #[test]
    fn language_codes_map_to_our_languages_or_english() {
        assert_eq!(Lang::from_code(Some("fa")), Lang::Fa);
        assert_eq!(Lang::from_code(Some("fa-IR")), Lang::Fa);
        assert_eq!(Lang::from_code(Some("DE")), Lang::De);
        assert_eq!(Lang::from_code(Some("ru_RU")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("pt-br")), Lang::En);
        assert_eq!(Lang::from_code(None), Lang::En);
        assert!(Lang::Fa.is_rtl() && !Lang::Ru.is_rtl());
        let texts = ["Pay", "Payer", "Bezahlen", "پرداخت", "Оплатить"];
        for (lang, text) in Lang::ALL.iter().zip(texts) {
            assert_eq!(lang.pick(texts), text);
        }
    }
}
