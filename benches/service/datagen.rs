//! Seeded, reproducible test data: a people CSV with a chosen share of duplicate persons.

use std::io::{BufWriter, Write};
use std::path::Path;

/// SplitMix64: tiny, fast, and the same sequence on every machine for a seed.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

const FIRST: [&str; 40] = [
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannah", "Ida", "Jonas", "Karl",
    "Lena", "Mia", "Noah", "Olivia", "Paul", "Quentin", "Rosa", "Sophie", "Tom", "Ulla", "Viktor",
    "Wiebke", "Xaver", "Yara", "Zoe", "Lukas", "Marie", "Finn", "Leonie", "Elias", "Lea", "Henry",
    "Amelie", "Emil", "Frieda", "Anton", "Johanna", "Oskar", "Mila",
];

const LAST: [&str; 40] = [
    "Mueller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Schroeder",
    "Neumann",
    "Schwarz",
    "Braun",
    "Zimmermann",
    "Hofmann",
    "Hartmann",
    "Krueger",
    "Lange",
    "Schmitt",
    "Werner",
    "Krause",
    "Meier",
    "Lehmann",
    "Schmid",
    "Schulze",
    "Maier",
    "Koehler",
    "Herrmann",
    "Walter",
    "Koenig",
    "Mayer",
    "Huber",
    "Kaiser",
    "Fuchs",
    "Peters",
];

/// (city, country); `City eq 'Berlin'` matches 1 row in 24.
pub const CITIES: [(&str, &str); 24] = [
    ("Berlin", "DE"),
    ("Hamburg", "DE"),
    ("Munich", "DE"),
    ("Cologne", "DE"),
    ("Frankfurt", "DE"),
    ("Vienna", "AT"),
    ("Zurich", "CH"),
    ("Paris", "FR"),
    ("Lyon", "FR"),
    ("Madrid", "ES"),
    ("Barcelona", "ES"),
    ("Rome", "IT"),
    ("Milan", "IT"),
    ("Amsterdam", "NL"),
    ("Brussels", "BE"),
    ("Copenhagen", "DK"),
    ("Stockholm", "SE"),
    ("Oslo", "NO"),
    ("Warsaw", "PL"),
    ("Prague", "CZ"),
    ("Lisbon", "PT"),
    ("Dublin", "IE"),
    ("London", "GB"),
    ("Manchester", "GB"),
];

pub const HEADER: &str = "Id,Email,FirstName,LastName,Phone,City,Country,Age,TotalSpend,Vip";

/// What [`write_people`] produced.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Generated {
    pub rows: u64,
    pub duplicates: u64,
    pub bytes: u64,
}

struct Person {
    first: &'static str,
    last: &'static str,
    city: usize,
}

/// The `o`-th original person of a seed (derived, so duplicates need no memory).
fn person(seed: u64, o: u64) -> Person {
    let mut r = Rng::new(seed ^ o.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    Person {
        first: FIRST[r.below(40) as usize],
        last: LAST[r.below(40) as usize],
        city: r.below(CITIES.len() as u64) as usize,
    }
}

/// Writes `rows` people (header + rows) to `path`. Ids are 1..=rows. A share `dup_rate` of rows
/// (never the first) re-describes an earlier original person: half of them with the same email
/// in upper case (matched by an exact email rule), half with another email, the same phone
/// digits in another format and the last name with its last letter doubled (matched by
/// "phone exact + last name fuzzy ≥ 0.9").
pub fn write_people(
    path: &Path,
    rows: u64,
    dup_rate: f64,
    seed: u64,
) -> std::io::Result<Generated> {
    let file = std::fs::File::create(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    writeln!(w, "{HEADER}")?;
    let mut rng = Rng::new(seed);
    let mut originals = 0u64;
    let mut duplicates = 0u64;
    for id in 1..=rows {
        let age = 18 + rng.below(63);
        let spend = rng.below(500_000);
        let vip = rng.chance(0.1);
        if originals > 0 && rng.chance(dup_rate) {
            let o = rng.below(originals);
            let p = person(seed, o);
            let (city, country) = CITIES[p.city];
            if rng.chance(0.5) {
                let email = format!("{}.{}.{o}@example.com", p.first, p.last).to_uppercase();
                writeln!(
                    w,
                    "{id},{email},{},{},+49 30 {o:07},{city},{country},{age},{}.{:02},{vip}",
                    p.first,
                    p.last,
                    spend / 100,
                    spend % 100
                )?;
            } else {
                let last_char = &p.last[p.last.len() - 1..];
                writeln!(
                    w,
                    "{id},{}{}{o}@mail.example.org,{},{}{last_char},+49-30-{o:07},{city},{country},{age},{}.{:02},{vip}",
                    p.first.to_lowercase(),
                    p.last.to_lowercase(),
                    p.first,
                    p.last,
                    spend / 100,
                    spend % 100
                )?;
            }
            duplicates += 1;
        } else {
            let o = originals;
            originals += 1;
            let p = person(seed, o);
            let (city, country) = CITIES[p.city];
            writeln!(
                w,
                "{id},{}.{}.{o}@example.com,{},{},+49 30 {o:07},{city},{country},{age},{}.{:02},{vip}",
                p.first.to_lowercase(),
                p.last.to_lowercase(),
                p.first,
                p.last,
                spend / 100,
                spend % 100
            )?;
        }
    }
    w.flush()?;
    let bytes = std::fs::metadata(path)?.len();
    Ok(Generated {
        rows,
        duplicates,
        bytes,
    })
}
