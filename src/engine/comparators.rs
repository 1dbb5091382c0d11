//! How two normalized values of a field compare: a comparator and its levels, from "exactly
//! equal" (level 0) through the configured similarity or distance bands to "different" (the
//! last level). A missing value on either side has no level: it says nothing about a pair.
//! String measures are `strsim`'s; phonetic codes are `rphonetic`'s.

use serde::{Deserialize, Serialize};

#[derive(
    utoipa::ToSchema,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Normalization {
    /// The value as it is.
    Exact,
    /// Lower-cased (Unicode); whitespace is kept.
    CaseInsensitive,
    /// Trimmed, internal whitespace runs collapsed to one space; case is kept.
    Whitespace,
    /// Only letters and digits (Unicode), lower-cased.
    Alphanumeric,
    /// Trimmed and lower-cased (no `+tag` or dot stripping).
    Email,
    /// ASCII digits only (`+49 30 123` → `4930123`; no country-code handling).
    Phone,
}

impl Normalization {
    /// The normalized value (may be empty).
    pub fn apply(self, raw: &str) -> String {
        let mut out = String::with_capacity(raw.len());
        self.apply_into(raw, &mut out);
        out
    }

    pub(crate) fn apply_into(self, raw: &str, out: &mut String) {
        match self {
            Normalization::Exact => out.push_str(raw),
            Normalization::CaseInsensitive => push_lowercase(raw, out),
            Normalization::Whitespace => {
                for (i, word) in raw.split_whitespace().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(word);
                }
            }
            Normalization::Alphanumeric if raw.is_ascii() => out.extend(
                raw.bytes()
                    .filter(u8::is_ascii_alphanumeric)
                    .map(|b| char::from(b.to_ascii_lowercase())),
            ),
            Normalization::Alphanumeric => {
                for c in raw.chars().filter(|c| c.is_alphanumeric()) {
                    out.extend(c.to_lowercase());
                }
            }
            Normalization::Email => push_lowercase(raw.trim(), out),
            Normalization::Phone => out.extend(raw.chars().filter(char::is_ascii_digit)),
        }
    }
}

fn push_lowercase(s: &str, out: &mut String) {
    if s.is_ascii() {
        let start = out.len();
        out.push_str(s);
        out[start..].make_ascii_lowercase();
    } else {
        for c in s.chars() {
            out.extend(c.to_lowercase());
        }
    }
}

/// A way to compare two values of a field.
#[derive(utoipa::ToSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Comparator {
    /// Equal or not.
    Exact,
    /// Jaro-Winkler similarity; levels are similarities in (0, 1], highest first.
    JaroWinkler,
    /// Jaro similarity; levels as for jaroWinkler.
    Jaro,
    /// Levenshtein distance in characters; levels are maximum distances, smallest first.
    Levenshtein,
    /// Damerau-Levenshtein distance (a transposition of neighbours counts once); levels as for
    /// levenshtein.
    DamerauLevenshtein,
    /// Jaccard similarity of the sets of words (for addresses); levels as for jaroWinkler.
    TokenSet,
    /// Dates (`YYYY-MM-DD` or `YYYYMMDD`): exact, then day and month swapped, then within each
    /// level's number of days, smallest first.
    Date,
    /// Numbers: within each level's absolute tolerance, smallest first.
    Number,
    /// Same Soundex code (English names).
    Soundex,
    /// Same primary or alternate Double Metaphone code.
    DoubleMetaphone,
}

impl Comparator {
    /// Whether levels are similarities (highest first) rather than distances (smallest first).
    pub fn levels_are_similarities(self) -> bool {
        matches!(
            self,
            Comparator::JaroWinkler | Comparator::Jaro | Comparator::TokenSet
        )
    }

    /// Whether the comparator takes configured levels at all.
    pub fn takes_levels(self) -> bool {
        !matches!(
            self,
            Comparator::Exact | Comparator::Soundex | Comparator::DoubleMetaphone
        )
    }

    /// Checks configured levels; the message says what is wrong.
    pub fn check_levels(self, levels: &[f64]) -> Result<(), String> {
        if !self.takes_levels() {
            return if levels.is_empty() {
                Ok(())
            } else {
                Err(format!("{self:?} takes no levels"))
            };
        }
        if levels.is_empty() {
            return Err("at least one level is required".into());
        }
        if levels.len() > 8 {
            return Err("at most 8 levels".into());
        }
        for pair in levels.windows(2) {
            let ordered = if self.levels_are_similarities() {
                pair[0] > pair[1]
            } else {
                pair[0] < pair[1]
            };
            if !ordered {
                return Err(if self.levels_are_similarities() {
                    "similarity levels must decrease".into()
                } else {
                    "distance levels must increase".into()
                });
            }
        }
        for &level in levels {
            let ok = if self.levels_are_similarities() {
                level > 0.0 && level <= 1.0
            } else {
                level.is_finite() && level >= 0.0
            };
            if !ok {
                return Err(format!(
                    "level {level} is out of range ({})",
                    if self.levels_are_similarities() {
                        "similarities are in (0, 1]"
                    } else {
                        "distances are 0 or more"
                    }
                ));
            }
        }
        Ok(())
    }

    /// How many levels a comparison has: exact, the extra ones, the configured ones, else.
    pub fn level_count(self, levels: &[f64]) -> usize {
        let extra = match self {
            Comparator::Date | Comparator::Soundex | Comparator::DoubleMetaphone => 1,
            _ => 0,
        };
        2 + extra + if self.takes_levels() { levels.len() } else { 0 }
    }

    /// The level of two non-empty normalized values: 0 for equal, the last for different.
    pub fn level(self, levels: &[f64], a: &str, b: &str) -> u8 {
        let last = (self.level_count(levels) - 1) as u8;
        if a == b {
            return 0;
        }
        let band = |hit: &dyn Fn(f64) -> bool, first: u8| -> u8 {
            levels
                .iter()
                .position(|&l| hit(l))
                .map_or(last, |i| first + i as u8)
        };
        match self {
            Comparator::Exact => last,
            Comparator::JaroWinkler => {
                let s = strsim::jaro_winkler(a, b);
                band(&|l| s >= l, 1)
            }
            Comparator::Jaro => {
                let s = strsim::jaro(a, b);
                band(&|l| s >= l, 1)
            }
            Comparator::TokenSet => {
                let s = token_jaccard(a, b);
                band(&|l| s >= l, 1)
            }
            Comparator::Levenshtein => {
                let d = strsim::levenshtein(a, b) as f64;
                band(&|l| d <= l, 1)
            }
            Comparator::DamerauLevenshtein => {
                let d = strsim::damerau_levenshtein(a, b) as f64;
                band(&|l| d <= l, 1)
            }
            Comparator::Number => match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
                (Ok(x), Ok(y)) if x == y => 0,
                (Ok(x), Ok(y)) => band(&|l| (x - y).abs() <= l, 1),
                _ => last,
            },
            Comparator::Date => match (parse_date(a), parse_date(b)) {
                (Some(x), Some(y)) if x == y => 0,
                (Some(x), Some(y)) if swapped(x, y) => 1,
                (Some(x), Some(y)) => {
                    let days = (x - y).num_days().abs() as f64;
                    band(&|l| days <= l, 2)
                }
                _ => last,
            },
            Comparator::Soundex => {
                use rphonetic::Encoder;
                let soundex = rphonetic::Soundex::default();
                if soundex.encode(a) == soundex.encode(b) && !soundex.encode(a).is_empty() {
                    1
                } else {
                    last
                }
            }
            Comparator::DoubleMetaphone => {
                let dm = rphonetic::DoubleMetaphone::default();
                let (x, y) = (dm.double_metaphone(a), dm.double_metaphone(b));
                let codes = |r: &rphonetic::DoubleMetaphoneResult| {
                    [r.primary(), r.alternate()]
                        .into_iter()
                        .filter(|c| !c.is_empty())
                        .collect::<Vec<String>>()
                };
                let (x, y) = (codes(&x), codes(&y));
                if x.iter().any(|c| y.contains(c)) {
                    1
                } else {
                    last
                }
            }
        }
    }
}

/// Jaccard similarity of the two values' sets of whitespace-separated words.
pub fn token_jaccard(a: &str, b: &str) -> f64 {
    let x: std::collections::BTreeSet<&str> = a.split_whitespace().collect();
    let y: std::collections::BTreeSet<&str> = b.split_whitespace().collect();
    let union = x.union(&y).count();
    if union == 0 {
        return 0.0;
    }
    x.intersection(&y).count() as f64 / union as f64
}

/// A date as `YYYY-MM-DD`, or `YYYYMMDD` (what digits-only normalization leaves of it).
fn parse_date(text: &str) -> Option<chrono::NaiveDate> {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    if digits.len() != 8 {
        return None;
    }
    chrono::NaiveDate::parse_from_str(&digits, "%Y%m%d").ok()
}

/// The same date with day and month exchanged (a common data-entry error).
fn swapped(x: chrono::NaiveDate, y: chrono::NaiveDate) -> bool {
    use chrono::Datelike;
    x.year() == y.year() && x.month() == y.day() && x.day() == y.month()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Comparator::*;

    #[test]
    fn exact_values_are_level_zero_and_different_ones_the_last() {
        for c in [
            Exact,
            JaroWinkler,
            Levenshtein,
            Date,
            Number,
            Soundex,
            TokenSet,
        ] {
            let levels = if c.takes_levels() { vec![1.0] } else { vec![] };
            let levels = if c.levels_are_similarities() {
                vec![0.9]
            } else {
                levels
            };
            assert_eq!(c.level(&levels, "19560409", "19560409"), 0, "{c:?}");
            let last = (c.level_count(&levels) - 1) as u8;
            assert_eq!(c.level(&levels, "abc", "xyz qq 12"), last, "{c:?}");
        }
    }

    #[test]
    fn similarity_bands() {
        let levels = [0.95, 0.85];
        assert_eq!(JaroWinkler.level(&levels, "martha", "marhta"), 1); // 0.961
        let dixon = strsim::jaro_winkler("dixon", "dicksonx");
        assert!((0.75..0.85).contains(&dixon), "{dixon}");
        assert_eq!(JaroWinkler.level(&levels, "dixon", "dicksonx"), 3);
        assert_eq!(JaroWinkler.level(&[0.95, 0.75], "dixon", "dicksonx"), 2);
        assert_eq!(Jaro.level(&[0.9], "martha", "marhta"), 1); // 0.944
        assert_eq!(
            TokenSet.level(&[0.6], "12 main street", "main street 12b"),
            2 // 2 of 4 words
        );
        assert_eq!(
            TokenSet.level(&[0.5], "12 main street", "main street 12b"),
            1
        );
    }

    #[test]
    fn edit_distances_on_digit_codes() {
        // A transposition is one Damerau-Levenshtein edit but two Levenshtein edits.
        assert_eq!(
            DamerauLevenshtein.level(&[1.0, 2.0], "8149220", "8149202"),
            1
        );
        assert_eq!(Levenshtein.level(&[1.0, 2.0], "8149220", "8149202"), 2);
        assert_eq!(Levenshtein.level(&[1.0], "4129", "4128"), 1);
        assert_eq!(Levenshtein.level(&[1.0], "4129", "4218"), 2);
    }

    #[test]
    fn dates_numbers_and_phonetics() {
        assert_eq!(Date.level(&[3.0, 30.0], "1956-04-09", "19560409"), 0);
        assert_eq!(Date.level(&[3.0, 30.0], "1956-04-09", "1956-09-04"), 1);
        assert_eq!(Date.level(&[3.0, 30.0], "1956-04-09", "1956-04-11"), 2);
        assert_eq!(Date.level(&[3.0, 30.0], "1956-04-09", "1956-05-01"), 3);
        assert_eq!(Date.level(&[3.0, 30.0], "1956-04-09", "1957-04-09"), 4);
        assert_eq!(Date.level(&[3.0], "1956-04-09", "not a date"), 3);
        assert_eq!(Number.level(&[0.5, 5.0], "10", "10.0"), 0);
        assert_eq!(Number.level(&[0.5, 5.0], "10", "10.4"), 1);
        assert_eq!(Number.level(&[0.5, 5.0], "10", "14"), 2);
        assert_eq!(Number.level(&[0.5, 5.0], "10", "x"), 3);
        assert_eq!(Soundex.level(&[], "robert", "rupert"), 1);
        assert_eq!(Soundex.level(&[], "robert", "rubin"), 2);
        assert_eq!(DoubleMetaphone.level(&[], "smith", "schmidt"), 1);
        assert_eq!(DoubleMetaphone.level(&[], "smith", "jones"), 2);
    }

    #[test]
    fn levels_are_checked() {
        assert!(JaroWinkler.check_levels(&[0.9, 0.8]).is_ok());
        assert!(JaroWinkler.check_levels(&[0.8, 0.9]).is_err());
        assert!(JaroWinkler.check_levels(&[1.5]).is_err());
        assert!(JaroWinkler.check_levels(&[]).is_err());
        assert!(Levenshtein.check_levels(&[1.0, 2.0]).is_ok());
        assert!(Levenshtein.check_levels(&[2.0, 1.0]).is_err());
        assert!(Exact.check_levels(&[1.0]).is_err());
        assert!(Soundex.check_levels(&[]).is_ok());
        assert_eq!(Date.level_count(&[3.0]), 4);
        assert_eq!(Exact.level_count(&[]), 2);
    }
}
