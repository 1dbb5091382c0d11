//! Scored matching (Fellegi–Sunter): a scored rule compares the candidate pairs its blocking
//! keys produce field by field, each comparison giving a level (exact, similarity or distance
//! bands, different; a missing value gives none and counts neither way). Each level has an `m`
//! probability (among true matches) and a `u` probability (among non-matches); a pair's match
//! weight is `log2(λ / (1 - λ)) + Σ log2(m / u)` over its levels, and its match probability
//! `2^w / (1 + 2^w)`, with `λ` the share of matches among the candidate pairs.
//!
//! Without labels the parameters are estimated: `u` from a seeded random sample of record
//! pairs (nearly all random pairs are non-matches), then `m` and `λ` by expectation
//! maximisation over the candidate pairs' level patterns. Parameters given in the configuration
//! are kept as given.
//!
//! Blocking: a candidate pair agrees exactly on every field of at least one blocking key (values
//! normalized as the field's comparison normalizes them; an empty value joins no block). A pair
//! is counted under the first key that produces it, so the union has no duplicates. A block of
//! more than `maxBlockSize` records is not compared and the result says how many pairs were
//! left out that way (nothing is dropped silently).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use super::comparators::{Comparator, Normalization};

/// The default cap on the records of one block.
pub const DEFAULT_MAX_BLOCK_SIZE: usize = 2_000;
/// At most this many candidate pairs (an upper bound counted before comparing) for one rule:
/// more means its blocking keys are not selective enough, and the run is refused with the
/// counts per key rather than using unbounded time and memory.
pub const MAX_CANDIDATE_PAIRS: u64 = 20_000_000;
/// Random record pairs sampled to estimate `u`.
const U_SAMPLE_PAIRS: usize = 1_000_000;
const EM_MAX_ITERATIONS: usize = 200;
const EM_TOLERANCE: f64 = 1e-7;
/// Probabilities are kept inside (0, 1): a level never seen still weighs something finite.
const MIN_PROBABILITY: f64 = 1e-6;
/// Pairs kept on each side of a scored rule's threshold for the preview.
pub const NEAR_THRESHOLD_SAMPLES: usize = 5;

/// A Fellegi–Sunter rule (public contract, camelCase JSON).
#[derive(utoipa::ToSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScoredRule {
    /// Name of the rule.
    pub name: String,
    /// Blocking keys: each a list of profile fields; records equal on all fields of a key are
    /// compared.
    pub blocking: Vec<Vec<String>>,
    /// The fields compared, each with its comparator and levels.
    pub comparisons: Vec<Comparison>,
    /// When a pair matches: at or above this match probability or match weight.
    pub threshold: ScoreThreshold,
    /// Blocks with more records are not compared (counted in the result); default 2000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_block_size: Option<usize>,
}

/// One compared field of a scored rule.
#[derive(utoipa::ToSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Comparison {
    /// A profile field.
    pub field: String,
    /// Other fields of the other record the field is also compared with (given name against
    /// surname for swapped names); the best level counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_against: Vec<String>,
    /// How values are normalized before comparing.
    pub normalization: Normalization,
    /// How the values compare.
    pub comparator: Comparator,
    /// Similarity thresholds (highest first) or distances (smallest first), per comparator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub levels: Vec<f64>,
    /// Given m probabilities, one per level (exact, the comparator's own, the configured ones,
    /// different); estimated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<Vec<f64>>,
    /// Given u probabilities, one per level; estimated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub u: Option<Vec<f64>>,
}

/// The threshold of a scored rule: exactly one of the two.
#[derive(utoipa::ToSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScoreThreshold {
    /// A match probability in (0, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_probability: Option<f64>,
    /// A match weight (log2 of the odds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_weight: Option<f64>,
}

impl ScoreThreshold {
    /// The threshold as a match weight.
    pub fn weight(&self) -> f64 {
        match (self.match_weight, self.match_probability) {
            (Some(w), _) => w,
            (None, Some(p)) => (p / (1.0 - p)).log2(),
            (None, None) => f64::INFINITY,
        }
    }
}

impl ScoredRule {
    /// Checks the rule against the profile fields; the message names what is wrong.
    pub fn validate(
        &self,
        at: &str,
        fields: &std::collections::BTreeSet<&str>,
    ) -> Result<(), String> {
        let known = |f: &str, what: &str| {
            if fields.contains(f) {
                Ok(())
            } else {
                Err(format!(
                    "{at}: {what} '{f}' is not a profile field mapped by any source"
                ))
            }
        };
        if self.blocking.is_empty() {
            return Err(format!(
                "{at}: blocking needs at least one key (a list of fields records must share to be compared)"
            ));
        }
        for key in &self.blocking {
            if key.is_empty() {
                return Err(format!("{at}: a blocking key has no field"));
            }
            for f in key {
                known(f, "blocking field")?;
            }
        }
        if self.comparisons.is_empty() {
            return Err(format!("{at}: at least one comparison is required"));
        }
        for (c, cmp) in self.comparisons.iter().enumerate() {
            let at = format!("{at} comparisons[{c}]");
            known(&cmp.field, "field")?;
            for f in &cmp.also_against {
                known(f, "alsoAgainst field")?;
            }
            cmp.comparator
                .check_levels(&cmp.levels)
                .map_err(|e| format!("{at}: {e}"))?;
            let n = cmp.comparator.level_count(&cmp.levels);
            for (name, given) in [("m", &cmp.m), ("u", &cmp.u)] {
                if let Some(p) = given {
                    if p.len() != n {
                        return Err(format!(
                            "{at}: {name} needs {n} probabilities (one per level), got {}",
                            p.len()
                        ));
                    }
                    if p.iter().any(|x| !(*x > 0.0 && *x < 1.0)) {
                        return Err(format!("{at}: {name} probabilities must be in (0, 1)"));
                    }
                }
            }
        }
        match (
            self.threshold.match_probability,
            self.threshold.match_weight,
        ) {
            (Some(p), None) if p > 0.0 && p < 1.0 => {}
            (None, Some(w)) if w.is_finite() => {}
            (Some(_), Some(_)) | (None, None) => {
                return Err(format!(
                    "{at}: threshold needs exactly one of matchProbability and matchWeight"
                ))
            }
            _ => {
                return Err(format!(
                    "{at}: matchProbability must be in (0, 1), matchWeight finite"
                ))
            }
        }
        if self.max_block_size == Some(0) {
            return Err(format!("{at}: maxBlockSize must be at least 1"));
        }
        Ok(())
    }
}

/// What a rule did in one run (the unification job's result lists one per rule).
#[derive(utoipa::ToSchema, Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleReport {
    /// The rule.
    pub rule: String,
    /// `exact` for a deterministic rule, `scored` for a Fellegi–Sunter rule.
    pub kind: String,
    /// Record pairs compared.
    pub candidate_pairs: u64,
    /// Pairs the rule matched.
    pub pairs_matched: u64,
    /// Records in at least one pair the rule matched.
    pub records_linked: u64,
    /// Per blocking key of a scored rule: the pairs it produced (first key wins) and what was
    /// left out as too large.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<BlockReport>,
    /// The estimated (or given) parameters of a scored rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
}

/// What one blocking key produced.
#[derive(utoipa::ToSchema, Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockReport {
    /// The key's fields.
    pub key: Vec<String>,
    /// New candidate pairs (not produced by an earlier key).
    pub candidate_pairs: u64,
    /// Blocks of more than maxBlockSize records, not compared.
    pub oversized_blocks: u64,
    /// The pairs those blocks would have produced.
    pub pairs_left_out: u64,
}

/// The parameters of a scored rule after estimation.
#[derive(utoipa::ToSchema, Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Parameters {
    /// The share of matches among the candidate pairs.
    pub lambda: f64,
    /// EM iterations run.
    pub iterations: u64,
    /// Per comparison: m, u and the weight log2(m/u) of each level.
    pub comparisons: Vec<LevelParameters>,
}

/// The levels of one comparison.
#[derive(utoipa::ToSchema, Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LevelParameters {
    /// The compared field.
    pub field: String,
    /// Per level: the probability among matches.
    pub m: Vec<f64>,
    /// Per level: the probability among non-matches.
    pub u: Vec<f64>,
    /// Per level: log2(m/u), what the level adds to a pair's match weight.
    pub weight: Vec<f64>,
}

/// A pair a scored rule matched: the records (indexes) and its match weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredPair {
    pub a: u32,
    pub b: u32,
    pub weight: f64,
}

/// The normalized values a rule needs, one column per (field, normalization).
struct Values {
    columns: Vec<Vec<String>>,
    index: HashMap<(String, Normalization), usize>,
}

impl Values {
    fn build(
        wanted: Vec<(String, Normalization)>,
        records: &[&BTreeMap<String, String>],
    ) -> Values {
        let mut unique: Vec<(String, Normalization)> = Vec::new();
        for w in wanted {
            if !unique.contains(&w) {
                unique.push(w);
            }
        }
        let columns = unique
            .iter()
            .map(|(f, n)| {
                records
                    .iter()
                    .map(|r| {
                        let v = r.get(f).map(|raw| n.apply(raw)).unwrap_or_default();
                        if v.trim().is_empty() {
                            String::new()
                        } else {
                            v
                        }
                    })
                    .collect()
            })
            .collect();
        let index = unique
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, i))
            .collect();
        Values { columns, index }
    }

    fn column(&self, field: &str, normalization: Normalization) -> &[String] {
        &self.columns[self.index[&(field.to_string(), normalization)]]
    }
}

/// A blocking field is normalized as the rule's comparison of that field normalizes it, else
/// case-insensitively.
fn blocking_normalization(comparisons: &[Comparison], field: &str) -> Normalization {
    comparisons
        .iter()
        .find(|c| c.field == field)
        .map_or(Normalization::CaseInsensitive, |c| c.normalization)
}

/// The columns a rule reads: its comparisons' fields and its blocking fields.
fn wanted_columns(
    comparisons: &[Comparison],
    blocking: &[Vec<String>],
) -> Vec<(String, Normalization)> {
    let mut wanted = Vec::new();
    for c in comparisons {
        wanted.push((c.field.clone(), c.normalization));
        for other in &c.also_against {
            wanted.push((other.clone(), c.normalization));
        }
    }
    for key in blocking {
        for f in key {
            wanted.push((f.clone(), blocking_normalization(comparisons, f)));
        }
    }
    wanted
}

/// The compared columns of each comparison.
fn compared<'a>(comparisons: &'a [Comparison], values: &'a Values) -> Vec<Compared<'a>> {
    comparisons
        .iter()
        .map(|c| Compared {
            own: values.column(&c.field, c.normalization),
            others: c
                .also_against
                .iter()
                .map(|o| values.column(o, c.normalization))
                .collect(),
            comparator: c.comparator,
            levels: &c.levels,
        })
        .collect()
}

/// A comparison's columns: its own field, and the fields it is also compared against.
struct Compared<'a> {
    own: &'a [String],
    others: Vec<&'a [String]>,
    comparator: Comparator,
    levels: &'a [f64],
}

impl Compared<'_> {
    fn compare(&self, p: &str, q: &str) -> Option<u8> {
        (!p.is_empty() && !q.is_empty()).then(|| self.comparator.level(self.levels, p, q))
    }

    /// The level of the pair (`None` when a value is missing): the field against the other
    /// record's field, or, when better, the fields swapped with one of `alsoAgainst` (this
    /// field against the other record's other field and that against this one), at the worse
    /// of the two, so that one shared word does not count twice.
    fn level(&self, a: usize, b: usize) -> Option<u8> {
        let mut best = self.compare(&self.own[a], &self.own[b]);
        for other in &self.others {
            let swapped = match (
                self.compare(&self.own[a], &other[b]),
                self.compare(&other[a], &self.own[b]),
            ) {
                (Some(x), Some(y)) => Some(x.max(y)),
                _ => None,
            };
            best = match (best, swapped) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
        }
        best
    }
}

/// The level of a missing value in a pattern.
const MISSING: u8 = u8::MAX;

fn key_hash(values: &[&[String]], i: usize) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for column in values {
        let v = &column[i];
        if v.is_empty() {
            return None;
        }
        v.hash(&mut h);
    }
    Some(h.finish())
}

/// Candidate pairs of a blocking: per key, records equal on every field of the key (empty
/// values join no block); a pair under the first key that produces it; blocks above
/// `max_block` records left out and reported. Also gives each record's key hashes.
struct Candidates {
    pairs: Vec<(u32, u32)>,
    keys: Vec<Vec<Option<u64>>>,
    blocks: Vec<BlockReport>,
}

fn candidates(
    blocking: &[Vec<String>],
    comparisons: &[Comparison],
    values: &Values,
    n: usize,
    max_block: usize,
) -> Candidates {
    let keys: Vec<Vec<Option<u64>>> = blocking
        .iter()
        .map(|key| {
            let columns: Vec<&[String]> = key
                .iter()
                .map(|f| values.column(f, blocking_normalization(comparisons, f)))
                .collect();
            (0..n).map(|i| key_hash(&columns, i)).collect()
        })
        .collect();
    let mut pairs = Vec::new();
    let mut blocks = Vec::with_capacity(blocking.len());
    // Per key, the blocks too large to compare: a pair in one of them is not produced by it.
    let mut oversized: Vec<std::collections::HashSet<u64>> = Vec::new();
    for (k, key) in blocking.iter().enumerate() {
        oversized.push(std::collections::HashSet::new());
        let mut report = BlockReport {
            key: key.clone(),
            ..BlockReport::default()
        };
        let mut groups: HashMap<u64, Vec<u32>> = HashMap::new();
        for (i, h) in keys[k].iter().enumerate() {
            if let Some(h) = h {
                groups.entry(*h).or_default().push(i as u32);
            }
        }
        let mut groups: Vec<Vec<u32>> = groups.into_values().collect();
        // Deterministic order of the pairs (and so of the estimates) whatever the hashing.
        groups.sort_unstable_by_key(|g| g[0]);
        for members in groups {
            let size = members.len() as u64;
            if members.len() > max_block {
                if let Some(h) = keys[k][members[0] as usize] {
                    oversized[k].insert(h);
                }
                report.oversized_blocks += 1;
                report.pairs_left_out += size * (size - 1) / 2;
                continue;
            }
            for (x, &a) in members.iter().enumerate() {
                for &b in &members[x + 1..] {
                    let (ai, bi) = (a as usize, b as usize);
                    let earlier = keys[..k].iter().zip(&oversized).any(|(key, skipped)| {
                        key[ai].is_some_and(|h| key[bi] == Some(h) && !skipped.contains(&h))
                    });
                    if !earlier {
                        pairs.push((a, b));
                        report.candidate_pairs += 1;
                    }
                }
            }
        }
        blocks.push(report);
    }
    Candidates {
        pairs,
        keys,
        blocks,
    }
}

/// Refuses a blocking that would produce more than [`MAX_CANDIDATE_PAIRS`] pairs (counted per
/// key from the block sizes, before any comparison); the message names each key's count.
pub fn check_blocking(
    rule: &str,
    blocking: &[Vec<String>],
    comparisons: &[Comparison],
    records: &[&BTreeMap<String, String>],
    max_block: Option<usize>,
) -> Result<(), String> {
    let max_block = max_block.unwrap_or(DEFAULT_MAX_BLOCK_SIZE).max(1) as u64;
    let wanted = blocking
        .iter()
        .flatten()
        .map(|f| (f.clone(), blocking_normalization(comparisons, f)))
        .collect();
    let values = Values::build(wanted, records);
    let mut per_key = Vec::new();
    for key in blocking {
        let columns: Vec<&[String]> = key
            .iter()
            .map(|f| values.column(f, blocking_normalization(comparisons, f)))
            .collect();
        let mut sizes: HashMap<u64, u64> = HashMap::new();
        for i in 0..records.len() {
            if let Some(h) = key_hash(&columns, i) {
                *sizes.entry(h).or_default() += 1;
            }
        }
        let pairs: u64 = sizes
            .values()
            .filter(|&&s| s <= max_block)
            .map(|s| s * (s - 1) / 2)
            .sum();
        per_key.push((key.join("+"), pairs));
    }
    let total: u64 = per_key.iter().map(|(_, p)| p).sum();
    if total > MAX_CANDIDATE_PAIRS {
        let counts: Vec<String> = per_key.iter().map(|(k, p)| format!("{k}: {p}")).collect();
        return Err(format!(
            "rule '{rule}': its blocking keys would compare up to {total} record pairs (at most \
             {MAX_CANDIDATE_PAIRS}); use more selective keys (pairs per key: {})",
            counts.join(", ")
        ));
    }
    Ok(())
}

/// A deterministic rule evaluated over candidate pairs: its conditions as comparisons (a
/// condition holds when its level is not "different"), at least `min_agree` of them holding.
pub struct PairwiseRule<'a> {
    pub name: &'a str,
    pub blocking: Vec<Vec<String>>,
    pub conditions: Vec<Comparison>,
    pub min_agree: usize,
}

/// Runs a deterministic pairwise rule: the pairs it matches and its report.
pub fn run_pairwise(
    rule: &PairwiseRule,
    records: &[&BTreeMap<String, String>],
) -> (Vec<(u32, u32)>, RuleReport) {
    let n = records.len();
    let values = Values::build(wanted_columns(&rule.conditions, &rule.blocking), records);
    let compared = compared(&rule.conditions, &values);
    let last: Vec<u8> = rule
        .conditions
        .iter()
        .map(|c| (c.comparator.level_count(&c.levels) - 1) as u8)
        .collect();
    let found = candidates(
        &rule.blocking,
        &rule.conditions,
        &values,
        n,
        DEFAULT_MAX_BLOCK_SIZE,
    );
    let mut linked = vec![false; n];
    let mut matched = Vec::new();
    for &(a, b) in &found.pairs {
        let holding = compared
            .iter()
            .zip(&last)
            .filter(|(c, last)| c.level(a as usize, b as usize).is_some_and(|l| l < **last))
            .count();
        if holding >= rule.min_agree {
            matched.push((a, b));
            linked[a as usize] = true;
            linked[b as usize] = true;
        }
    }
    let report = RuleReport {
        rule: rule.name.to_string(),
        kind: "exact".into(),
        candidate_pairs: found.pairs.len() as u64,
        pairs_matched: matched.len() as u64,
        records_linked: linked.iter().filter(|&&l| l).count() as u64,
        blocks: found.blocks,
        parameters: None,
    };
    (matched, report)
}

/// Runs a scored rule over the records: the pairs it matches and its report.
pub fn run(rule: &ScoredRule, records: &[&BTreeMap<String, String>]) -> ScoredOutcome {
    let n = records.len();
    let values = Values::build(wanted_columns(&rule.comparisons, &rule.blocking), records);
    let compared = compared(&rule.comparisons, &values);
    let level_counts: Vec<usize> = rule
        .comparisons
        .iter()
        .map(|c| c.comparator.level_count(&c.levels))
        .collect();
    let max_block = rule.max_block_size.unwrap_or(DEFAULT_MAX_BLOCK_SIZE).max(1);
    let Candidates {
        pairs: candidate_pairs,
        keys,
        blocks,
    } = candidates(&rule.blocking, &rule.comparisons, &values, n, max_block);
    // Each candidate pair's level pattern; patterns counted, each once.
    let mut patterns: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut pattern_list: Vec<Vec<u8>> = Vec::new();
    let mut pattern_counts: Vec<u64> = Vec::new();
    let mut pairs: Vec<(u32, u32, u32)> = Vec::with_capacity(candidate_pairs.len());
    let levels = in_parallel(&candidate_pairs, |chunk| {
        chunk
            .iter()
            .map(|&(a, b)| {
                compared
                    .iter()
                    .map(|c| c.level(a as usize, b as usize).unwrap_or(MISSING))
                    .collect::<Vec<u8>>()
            })
            .collect::<Vec<_>>()
    });
    for ((a, b), pattern) in candidate_pairs
        .into_iter()
        .zip(levels.into_iter().flatten())
    {
        let id = *patterns.entry(pattern.clone()).or_insert_with(|| {
            pattern_list.push(pattern);
            pattern_counts.push(0);
            (pattern_list.len() - 1) as u32
        });
        pattern_counts[id as usize] += 1;
        pairs.push((a, b, id));
    }

    // u from random pairs, unless given: the pairs drawn from one seeded generator (the same
    // sample on every machine), their levels counted on several threads.
    let mut u: Vec<Vec<f64>> = level_counts.iter().map(|&l| vec![1.0; l]).collect();
    if n >= 2 && rule.comparisons.iter().any(|c| c.u.is_none()) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let total_pairs = (n as u64) * (n as u64 - 1) / 2;
        // Enough pairs to see every level's share, fewer for small inputs.
        let samples = (U_SAMPLE_PAIRS as u64)
            .min(total_pairs)
            .min((20 * n as u64).max(200_000)) as usize;
        let drawn: Vec<(u32, u32)> = (0..samples)
            .map(|_| {
                let a = rng.random_range(0..n);
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                (a as u32, b as u32)
            })
            .collect();
        let counts = in_parallel(&drawn, |chunk| {
            let mut counts: Vec<Vec<f64>> = level_counts.iter().map(|&l| vec![0.0; l]).collect();
            for &(a, b) in chunk {
                for (c, cmp) in compared.iter().enumerate() {
                    if let Some(l) = cmp.level(a as usize, b as usize) {
                        counts[c][l as usize] += 1.0;
                    }
                }
            }
            counts
        });
        for part in counts {
            for (total, part) in u.iter_mut().zip(part) {
                for (t, p) in total.iter_mut().zip(part) {
                    *t += p;
                }
            }
        }
    }
    for (c, cmp) in rule.comparisons.iter().enumerate() {
        match &cmp.u {
            Some(given) => u[c].clone_from(given),
            None => normalize(&mut u[c]),
        }
    }
    // m starts high on exact and falls level by level.
    let mut m: Vec<Vec<f64>> = level_counts
        .iter()
        .map(|&l| {
            let mut v: Vec<f64> = (0..l).map(|i| 0.5f64.powi(i as i32 * 2)).collect();
            v[l - 1] = v[l - 1].max(0.05);
            normalize(&mut v);
            v
        })
        .collect();
    for (c, cmp) in rule.comparisons.iter().enumerate() {
        if let Some(given) = &cmp.m {
            m[c].clone_from(given);
        }
    }
    // EM per blocking key (as Splink trains): among the pairs that agree on a key, the
    // comparisons of the key's fields always agree and would pass for evidence, so they sit
    // that session out. Each comparison's m is the mean of the sessions that estimated it.
    let given_m: Vec<bool> = rule.comparisons.iter().map(|c| c.m.is_some()).collect();
    let mut sums: Vec<Vec<f64>> = level_counts.iter().map(|&l| vec![0.0; l]).collect();
    let mut sessions = vec![0u32; m.len()];
    let mut iterations = 0u64;
    for (k, key) in rule.blocking.iter().enumerate() {
        let sitting_out: Vec<bool> = rule
            .comparisons
            .iter()
            .map(|c| key.contains(&c.field))
            .collect();
        let mut per_pattern = vec![0u64; pattern_list.len()];
        for &(a, b, id) in &pairs {
            let (a, b) = (a as usize, b as usize);
            if keys[k][a].is_some() && keys[k][a] == keys[k][b] {
                per_pattern[id as usize] += 1;
            }
        }
        let mut counts: HashMap<Vec<u8>, u64> = HashMap::new();
        for (id, &count) in per_pattern.iter().enumerate().filter(|(_, c)| **c > 0) {
            let mut pattern = pattern_list[id].clone();
            for (c, out) in sitting_out.iter().enumerate() {
                if *out {
                    pattern[c] = MISSING;
                }
            }
            *counts.entry(pattern).or_default() += count;
        }
        let mut session: Vec<(Vec<u8>, u64)> = counts.into_iter().collect();
        session.sort_unstable();
        let estimate: Vec<bool> = (0..m.len())
            .map(|c| !given_m[c] && !sitting_out[c])
            .collect();
        if session.is_empty() || !estimate.iter().any(|e| *e) {
            continue;
        }
        let (session_m, _, runs) =
            expectation_maximisation(&session, m.clone(), &u, &estimate, 0.1);
        iterations += runs;
        for c in 0..m.len() {
            if estimate[c] {
                for (sum, x) in sums[c].iter_mut().zip(&session_m[c]) {
                    *sum += x;
                }
                sessions[c] += 1;
            }
        }
    }
    for c in 0..m.len() {
        if sessions[c] > 0 {
            let mut mean: Vec<f64> = sums[c].iter().map(|x| x / f64::from(sessions[c])).collect();
            normalize(&mut mean);
            m[c] = mean;
        }
    }
    // The share of matches among all candidates, with m and u as estimated.
    let all: Vec<(Vec<u8>, u64)> = pattern_list
        .iter()
        .cloned()
        .zip(pattern_counts.iter().copied())
        .collect();
    let lambda = if all.is_empty() {
        0.5
    } else {
        let (_, lambda, runs) =
            expectation_maximisation(&all, m.clone(), &u, &vec![false; m.len()], 0.1);
        iterations += runs;
        lambda
    };

    let prior = (lambda / (1.0 - lambda)).log2();
    let threshold = rule.threshold.weight();
    let weights: Vec<f64> = pattern_list
        .iter()
        .map(|pattern| prior + pattern_weight(pattern, &m, &u))
        .collect();
    let mut matched = Vec::new();
    let mut linked = vec![false; n];
    // The pairs closest to the threshold on either side (the preview shows them).
    let mut above: Vec<ScoredPair> = Vec::new();
    let mut below: Vec<ScoredPair> = Vec::new();
    let keep = |list: &mut Vec<ScoredPair>, pair: ScoredPair, closer: fn(f64, f64) -> bool| {
        if list.len() < NEAR_THRESHOLD_SAMPLES {
            list.push(pair);
        } else if let Some(worst) = (0..list.len())
            .filter(|&i| closer(pair.weight, list[i].weight))
            .min_by(|&i, &j| list[i].weight.total_cmp(&list[j].weight).then(i.cmp(&j)))
        {
            list[worst] = pair;
        }
    };
    for &(a, b, id) in &pairs {
        let w = weights[id as usize];
        let pair = ScoredPair { a, b, weight: w };
        if w >= threshold {
            matched.push(pair);
            linked[a as usize] = true;
            linked[b as usize] = true;
            keep(&mut above, pair, |new, old| new < old);
        } else {
            keep(&mut below, pair, |new, old| new > old);
        }
    }
    let parameters = Parameters {
        lambda,
        iterations,
        comparisons: rule
            .comparisons
            .iter()
            .zip(m.iter().zip(&u))
            .map(|(c, (m, u))| LevelParameters {
                field: c.field.clone(),
                weight: m.iter().zip(u).map(|(m, u)| (m / u).log2()).collect(),
                m: m.clone(),
                u: u.clone(),
            })
            .collect(),
    };
    let report = RuleReport {
        rule: rule.name.clone(),
        kind: "scored".into(),
        candidate_pairs: pairs.len() as u64,
        pairs_matched: matched.len() as u64,
        records_linked: linked.iter().filter(|&&l| l).count() as u64,
        blocks,
        parameters: Some(parameters),
    };
    above.sort_by(|x, y| x.weight.total_cmp(&y.weight));
    below.sort_by(|x, y| y.weight.total_cmp(&x.weight));
    ScoredOutcome {
        matched,
        report,
        above,
        below,
    }
}

/// What a scored rule found: its matches, its report, and the pairs nearest its threshold
/// (just above, lowest first; just below, highest first).
pub struct ScoredOutcome {
    pub matched: Vec<ScoredPair>,
    pub report: RuleReport,
    pub above: Vec<ScoredPair>,
    pub below: Vec<ScoredPair>,
}

/// Expectation maximisation over level patterns (with their counts): estimates the m of the
/// comparisons `estimate` marks, and λ; u stays. Returns m, λ and the iterations run.
fn expectation_maximisation(
    patterns: &[(Vec<u8>, u64)],
    mut m: Vec<Vec<f64>>,
    u: &[Vec<f64>],
    estimate: &[bool],
    mut lambda: f64,
) -> (Vec<Vec<f64>>, f64, u64) {
    let mut iterations = 0;
    for _ in 0..EM_MAX_ITERATIONS {
        iterations += 1;
        let mut matches = 0.0;
        let mut total = 0.0;
        let mut m_acc: Vec<Vec<f64>> = m.iter().map(|l| vec![0.0; l.len()]).collect();
        for (pattern, count) in patterns {
            let p = probability(pattern, &m, u, lambda);
            let count = *count as f64;
            matches += p * count;
            total += count;
            for (c, &l) in pattern.iter().enumerate() {
                if l != MISSING {
                    m_acc[c][l as usize] += p * count;
                }
            }
        }
        let next_lambda = (matches / total).clamp(MIN_PROBABILITY, 1.0 - MIN_PROBABILITY);
        let mut change = (next_lambda - lambda).abs();
        lambda = next_lambda;
        for c in 0..m.len() {
            if !estimate[c] || m_acc[c].iter().sum::<f64>() <= 0.0 {
                continue;
            }
            let mut next = std::mem::take(&mut m_acc[c]);
            normalize(&mut next);
            for (old, new) in m[c].iter().zip(&next) {
                change = change.max((old - new).abs());
            }
            m[c] = next;
        }
        if change < EM_TOLERANCE {
            break;
        }
    }
    (m, lambda, iterations)
}

/// `work` over consecutive chunks of `items`, on up to 8 threads when there is enough of it;
/// the results in chunk order.
fn in_parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&[T]) -> R + Sync) -> Vec<R> {
    const MIN_PER_THREAD: usize = 20_000;
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .clamp(1, 8)
        .min(items.len() / MIN_PER_THREAD)
        .max(1);
    if threads == 1 {
        return vec![work(items)];
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let work = &work;
                scope.spawn(move || work(part))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("comparison worker panicked"))
            .collect()
    })
}

/// Scales to a sum of 1, every entry at least [`MIN_PROBABILITY`].
fn normalize(v: &mut [f64]) {
    for x in v.iter_mut() {
        *x = x.max(MIN_PROBABILITY);
    }
    let sum: f64 = v.iter().sum();
    for x in v.iter_mut() {
        *x /= sum;
    }
}

fn pattern_weight(pattern: &[u8], m: &[Vec<f64>], u: &[Vec<f64>]) -> f64 {
    pattern
        .iter()
        .enumerate()
        .filter(|(_, &l)| l != MISSING)
        .map(|(c, &l)| (m[c][l as usize] / u[c][l as usize]).log2())
        .sum()
}

/// The match probability of a pattern.
fn probability(pattern: &[u8], m: &[Vec<f64>], u: &[Vec<f64>], lambda: f64) -> f64 {
    let w = (lambda / (1.0 - lambda)).log2() + pattern_weight(pattern, m, u);
    let odds = w.exp2();
    if odds.is_infinite() {
        1.0
    } else {
        odds / (1.0 + odds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn record(_key: usize, fields: &[(&str, String)]) -> BTreeMap<String, String> {
        fields
            .iter()
            .map(|(f, v)| (f.to_string(), v.clone()))
            .collect()
    }

    fn run(
        rule: &ScoredRule,
        records: &[BTreeMap<String, String>],
    ) -> (Vec<ScoredPair>, RuleReport) {
        let refs: Vec<&BTreeMap<String, String>> = records.iter().collect();
        let outcome = super::run(rule, &refs);
        let threshold = rule.threshold.weight();
        assert!(outcome.above.iter().all(|p| p.weight >= threshold));
        assert!(outcome.below.iter().all(|p| p.weight < threshold));
        (outcome.matched, outcome.report)
    }

    fn rule(threshold: f64) -> ScoredRule {
        serde_json::from_value(serde_json::json!({
            "name": "fs",
            "blocking": [["zip"], ["last"]],
            "comparisons": [
                {"field": "first", "normalization": "case-insensitive", "comparator": "jaroWinkler", "levels": [0.9], "alsoAgainst": ["last"]},
                {"field": "last", "normalization": "case-insensitive", "comparator": "jaroWinkler", "levels": [0.9], "alsoAgainst": ["first"]},
                {"field": "dob", "normalization": "phone", "comparator": "damerauLevenshtein", "levels": [1]},
                {"field": "zip", "normalization": "phone", "comparator": "exact"}
            ],
            "threshold": {"matchProbability": threshold}
        }))
        .unwrap()
    }

    /// 2,000 people, 600 of them with a second record carrying typos, swapped names or a
    /// transposed date: EM finds m high on agreement and u low, and the rule finds the pairs.
    #[test]
    fn em_estimates_sensible_parameters_and_finds_the_duplicates() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let names = [
            "anna", "ben", "carla", "dario", "elena", "felix", "greta", "hugo", "ines", "jonas",
            "karin", "lukas", "mia", "noah", "olga", "paul", "rosa", "sven", "tina", "uwe",
        ];
        let lasts: Vec<String> = (0..300)
            .map(|_| {
                (0..rng.random_range(5..9))
                    .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                    .collect()
            })
            .collect();
        let mut records = Vec::new();
        let mut truth = Vec::new();
        for p in 0..2000 {
            let first = names[rng.random_range(0..names.len())].to_string();
            let last = lasts[rng.random_range(0..lasts.len())].clone();
            let dob = format!(
                "19{:02}{:02}{:02}",
                rng.random_range(40..99),
                rng.random_range(1..13),
                rng.random_range(10..29)
            );
            let zip = format!("{:04}", rng.random_range(1000..1100));
            records.push(record(
                p * 2,
                &[
                    ("first", first.clone()),
                    ("last", last.clone()),
                    ("dob", dob.clone()),
                    ("zip", zip.clone()),
                ],
            ));
            if p < 600 {
                let (mut f, mut l, mut d) = (first.clone(), last.clone(), dob.clone());
                match p % 3 {
                    0 => l.insert(2, 'q'),
                    1 => std::mem::swap(&mut f, &mut l),
                    _ => {
                        let mut c: Vec<char> = d.chars().collect();
                        c.swap(6, 7);
                        d = c.into_iter().collect();
                    }
                }
                records.push(record(
                    p * 2 + 1,
                    &[("first", f), ("last", l), ("dob", d), ("zip", zip)],
                ));
                truth.push((records.len() - 2, records.len() - 1));
            }
        }
        let (matched, report) = run(&rule(0.9), &records);
        let params = report.parameters.as_ref().unwrap();
        for c in &params.comparisons {
            assert!(c.m[0] > c.u[0] * 10.0, "{c:?}");
            assert!(c.m.last().unwrap() < c.u.last().unwrap(), "{c:?}");
        }
        assert!(params.lambda > 0.0 && params.lambda < 0.5, "{params:?}");
        let found: std::collections::HashSet<(usize, usize)> = matched
            .iter()
            .map(|p| (p.a as usize, p.b as usize))
            .collect();
        let hits = truth.iter().filter(|t| found.contains(t)).count();
        let false_positives = found.len() - hits;
        assert!(hits >= 590, "{hits} of {} found", truth.len());
        assert!(false_positives <= 5, "{false_positives} false positives");
        assert_eq!(report.blocks.len(), 2);
        assert_eq!(
            report.candidate_pairs,
            report.blocks.iter().map(|b| b.candidate_pairs).sum::<u64>()
        );
        assert!(report.blocks[0].candidate_pairs > 0 && report.blocks[1].candidate_pairs > 0);
    }

    #[test]
    fn a_pair_in_two_blocks_counts_once_and_oversized_blocks_are_reported() {
        let records: Vec<BTreeMap<String, String>> = (0..5)
            .map(|i| {
                record(
                    i,
                    &[
                        ("first", "ann".into()),
                        (
                            "last",
                            if i < 2 {
                                "smith".into()
                            } else {
                                format!("x{i}")
                            },
                        ),
                        ("zip", "1000".into()),
                        ("dob", "19700101".into()),
                    ],
                )
            })
            .collect();
        let mut small = rule(0.5);
        small.max_block_size = Some(3);
        let (_, report) = run(&small, &records);
        // The zip block (5 records) is too large; the surname block pairs records 0 and 1.
        assert_eq!(report.blocks[0].oversized_blocks, 1);
        assert_eq!(report.blocks[0].pairs_left_out, 10);
        assert_eq!(report.blocks[1].candidate_pairs, 1);
        let (_, report) = run(&rule(0.5), &records);
        assert_eq!(report.blocks[0].candidate_pairs, 10);
        assert_eq!(
            report.blocks[1].candidate_pairs, 0,
            "already produced by the zip key"
        );
    }

    #[test]
    fn given_parameters_are_kept_and_missing_values_are_neutral() {
        let mut r = rule(0.5);
        r.comparisons[3].m = Some(vec![0.9, 0.1]);
        r.comparisons[3].u = Some(vec![0.01, 0.99]);
        let records = vec![
            record(0, &[("zip", "1".into()), ("first", "a".into())]),
            record(1, &[("zip", "1".into())]),
        ];
        let (_, report) = run(&r, &records);
        let zip = &report.parameters.unwrap().comparisons[3];
        assert_eq!(zip.m, vec![0.9, 0.1]);
        assert_eq!(zip.u, vec![0.01, 0.99]);
        let pattern = [MISSING, MISSING, MISSING, 0];
        let m = vec![vec![0.5, 0.5]; 4];
        let u = vec![vec![0.5, 0.5]; 4];
        assert_eq!(pattern_weight(&pattern, &m, &u), 0.0);
    }

    #[test]
    fn a_blocking_that_would_compare_too_many_pairs_is_refused_before_comparing() {
        let records: Vec<BTreeMap<String, String>> = (0..7_000)
            .map(|i| record(i, &[("zip", "1000".into()), ("last", format!("l{i}"))]))
            .collect();
        let refs: Vec<&BTreeMap<String, String>> = records.iter().collect();
        let r = rule(0.9);
        // One block of 7,000 records: 24.5 million pairs.
        let e = check_blocking("fs", &r.blocking, &r.comparisons, &refs, Some(10_000)).unwrap_err();
        assert!(e.contains("24496500") && e.contains("zip: 24496500"), "{e}");
        // Left out as oversized by default (2,000): nothing to compare, nothing refused.
        assert!(check_blocking("fs", &r.blocking, &r.comparisons, &refs, None).is_ok());
    }

    #[test]
    fn validation_names_the_problem() {
        let fields: std::collections::BTreeSet<&str> = ["first", "last", "dob", "zip"].into();
        assert!(rule(0.9).validate("scoredRules[0]", &fields).is_ok());
        let mut r = rule(0.9);
        r.blocking.clear();
        assert!(r.validate("s", &fields).unwrap_err().contains("blocking"));
        let mut r = rule(0.9);
        r.threshold.match_weight = Some(3.0);
        assert!(r
            .validate("s", &fields)
            .unwrap_err()
            .contains("exactly one"));
        let mut r = rule(0.9);
        r.comparisons[0].levels = vec![0.5, 0.9];
        assert!(r.validate("s", &fields).unwrap_err().contains("decrease"));
        let mut r = rule(0.9);
        r.comparisons[3].m = Some(vec![0.5]);
        assert!(r
            .validate("s", &fields)
            .unwrap_err()
            .contains("2 probabilities"));
        let mut r = rule(0.9);
        r.blocking = vec![vec!["nope".into()]];
        assert!(r.validate("s", &fields).unwrap_err().contains("'nope'"));
    }
}
