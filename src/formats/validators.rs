//! Django 5.2's password validators (`django/contrib/auth/password_validation.py`), without
//! I/O: `UserAttributeSimilarityValidator`, `MinimumLengthValidator`,
//! `CommonPasswordValidator` and `NumericPasswordValidator`, `validate_password`, the help
//! texts, and the `AUTH_PASSWORD_VALIDATORS` setting.
//!
//! Messages are Django's English msgids (what every `LANGUAGE_CODE = "en*"` site shows).
//!
//! Python string semantics matter here and are reproduced exactly for CPython 3.11
//! (Unicode 14.0.0), the Python the spec's examples were produced with:
//! * lengths are code points (`len(str)`),
//! * `str.lower()` (full case mapping, `İ` → `i̇`, context-sensitive final sigma),
//! * `str.strip()` (Python's whitespace, which includes `\x1c`–`\x1f` unlike Rust's),
//! * `str.isdigit()` (Numeric_Type Digit/Decimal: `²`, `١`, `①`, `𝟏` but not `½`, `Ⅷ`, `一`),
//! * `re.split(r"\W+", s)` (Python's `\w` is `str.isalnum()` or `_`: letters and numbers,
//!   but not combining marks, which Rust's `is_alphanumeric` counts).
//!
//! The character classes come from tables generated with CPython 3.11
//! (`validators_unicode.rs`); lowercasing uses Rust's per-character mappings, restricted to
//! the code points assigned in Unicode 14.0, with CPython's final-sigma rule and tables.
//! Tests compare all of this with digests CPython computed over every code point. On
//! Python 3.12+ (Unicode 15+) Django differs only for characters assigned or re-classified
//! since Unicode 14.0.

use serde::Deserialize;
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, OnceLock};

include!("validators_unicode.rs");

/// The module path of the four validators, as written in `AUTH_PASSWORD_VALIDATORS`.
pub const MODULE: &str = "django.contrib.auth.password_validation";

// ---------------------------------------------------------------------------------------
// Python `str` semantics
// ---------------------------------------------------------------------------------------

fn in_table(table: &[(u32, u32)], c: char) -> bool {
    let cp = c as u32;
    table
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                std::cmp::Ordering::Less
            } else if lo > cp {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Whether Python's `re` matches `c` with `\w` (on `str`, without `re.ASCII`).
pub fn py_is_word_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '_'
    } else {
        in_table(WORD, c)
    }
}

/// `c.isdigit()` for one character.
pub fn py_is_digit_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_digit()
    } else {
        in_table(DIGIT, c)
    }
}

/// `c.isspace()`: what `str.strip()` removes.
pub fn py_is_space_char(c: char) -> bool {
    in_table(SPACE, c)
}

/// `s.isdigit()`: non-empty and every character a digit.
pub fn py_isdigit(s: &str) -> bool {
    !s.is_empty() && s.chars().all(py_is_digit_char)
}

/// `s.strip()`.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_is_space_char)
}

/// `s.lower()` as CPython 3.11 computes it.
///
/// Each character takes its full lowercase mapping (`İ` → `i̇`), from Rust's `char`, for the
/// code points assigned in CPython 3.11's Unicode database; others have no mapping there
/// and are kept. A capital sigma becomes `ς` in CPython's Final_Sigma context
/// (`unicodeobject.c: handle_capital_sigma`): skipping case-ignorable characters, a cased
/// one before it and none after it. That context uses CPython's own Cased and
/// Case_Ignorable tables, because they changed since Unicode 14.0 for assigned characters
/// (U+0295 `ʕ` is no longer cased, U+1171E is no longer case-ignorable), so Rust's
/// `str::to_lowercase`, which implements the same rule, disagrees there.
pub fn py_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        if c == 'Σ' {
            out.push(if is_final_sigma(s, i) { 'ς' } else { 'σ' });
        } else if in_table(ASSIGNED, c) {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether the capital sigma at byte `i` of `s` is in the Final_Sigma context:
/// `\p{cased} \p{case-ignorable}* Σ !(\p{case-ignorable}* \p{cased})`. Each scan stops at
/// the nearest character that is not case-ignorable, so lowercasing stays linear.
fn is_final_sigma(s: &str, i: usize) -> bool {
    let not_ignorable = |c: &char| !in_table(CASE_IGNORABLE, *c);
    let cased_before = s[..i]
        .chars()
        .rev()
        .find(not_ignorable)
        .is_some_and(|c| in_table(CASED, c));
    cased_before
        && !s[i + 'Σ'.len_utf8()..]
            .chars()
            .find(not_ignorable)
            .is_some_and(|c| in_table(CASED, c))
}

/// `re.split(r"\W+", s)`: the pieces between runs of non-word characters, with an empty
/// first (last) piece when `s` starts (ends) with one.
pub fn py_split_non_word(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_separator = false;
    for (i, c) in s.char_indices() {
        if py_is_word_char(c) {
            if in_separator {
                start = i;
                in_separator = false;
            }
        } else if !in_separator {
            parts.push(&s[start..i]);
            in_separator = true;
        }
    }
    parts.push(if in_separator { "" } else { &s[start..] });
    parts
}

// ---------------------------------------------------------------------------------------
// difflib.SequenceMatcher (CPython 3.11 Lib/difflib.py), isjunk=None
// ---------------------------------------------------------------------------------------

/// `difflib._calculate_ratio`.
fn calculate_ratio(matches: usize, length: usize) -> f64 {
    if length > 0 {
        2.0 * matches as f64 / length as f64
    } else {
        1.0
    }
}

/// `SequenceMatcher(a=a, b=b).quick_ratio()`: twice the size of the multiset intersection
/// over the total length (1.0 when both are empty). Junk and autojunk play no part: CPython
/// counts `fullbcount` over all of `b`.
pub fn quick_ratio<T: Copy + Eq + Hash>(a: &[T], b: &[T]) -> f64 {
    // fullbcount[elt] = occurrences in b
    let mut fullbcount: HashMap<T, usize> = HashMap::new();
    for &elt in b {
        *fullbcount.entry(elt).or_insert(0) += 1;
    }
    // avail[elt] = occurrences in b less those of a seen so far; a match while positive.
    let mut avail: HashMap<T, isize> = HashMap::new();
    let mut matches = 0;
    for &elt in a {
        let numb = match avail.get(&elt) {
            Some(&n) => n,
            None => fullbcount.get(&elt).map_or(0, |&n| n as isize),
        };
        avail.insert(elt, numb - 1);
        if numb > 0 {
            matches += 1;
        }
    }
    calculate_ratio(matches, a.len() + b.len())
}

/// A matching block `a[a..a+size] == b[b..b+size]` (`difflib.Match`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Match {
    pub a: usize,
    pub b: usize,
    pub size: usize,
}

/// `difflib.SequenceMatcher(isjunk=None, a, b, autojunk=...)`, faithful to CPython 3.11's
/// `Lib/difflib.py`, so `ratio()` and `get_matching_blocks()` equal Python's for any input
/// (Python `str`s are compared as sequences of code points: pass `&[char]`).
///
/// Django's validator only uses `quick_ratio()` (see [`quick_ratio`]); the full matcher is
/// here for callers that need Python's `ratio()`.
#[derive(Clone, Debug)]
pub struct SequenceMatcher<'s, T: Copy + Eq + Hash> {
    a: &'s [T],
    b: &'s [T],
    /// `b2j`: for each element of `b` that is not popular, its indices in `b`, ascending.
    b2j: HashMap<T, Vec<usize>>,
    /// `bpopular`: elements dropped from `b2j` by the autojunk heuristic.
    bpopular: HashSet<T>,
}

impl<'s, T: Copy + Eq + Hash> SequenceMatcher<'s, T> {
    /// `SequenceMatcher(a=a, b=b)` (autojunk on, as in Django's call).
    pub fn new(a: &'s [T], b: &'s [T]) -> Self {
        Self::with_autojunk(a, b, true)
    }

    /// `SequenceMatcher(a=a, b=b, autojunk=autojunk)`.
    pub fn with_autojunk(a: &'s [T], b: &'s [T], autojunk: bool) -> Self {
        // __chain_b: map each element of b to the indices where it occurs.
        let mut b2j: HashMap<T, Vec<usize>> = HashMap::new();
        for (i, &elt) in b.iter().enumerate() {
            b2j.entry(elt).or_default().push(i);
        }
        // isjunk is None, so bjunk stays empty. Autojunk: when len(b) >= 200, an element
        // occurring more than len(b) // 100 + 1 times is "popular" and removed from b2j.
        let mut bpopular = HashSet::new();
        let n = b.len();
        if autojunk && n >= 200 {
            let ntest = n / 100 + 1;
            b2j.retain(|&elt, idxs| {
                if idxs.len() > ntest {
                    bpopular.insert(elt);
                    false
                } else {
                    true
                }
            });
        }
        SequenceMatcher {
            a,
            b,
            b2j,
            bpopular,
        }
    }

    /// The elements autojunk removed (`bpopular`).
    pub fn popular(&self) -> &HashSet<T> {
        &self.bpopular
    }

    /// `find_longest_match(alo, ahi, blo, bhi)`: the longest block of `a[alo..ahi]` equal to
    /// one of `b[blo..bhi]`, earliest in `a`, then earliest in `b`; `(alo, blo, 0)` if none.
    pub fn find_longest_match(&self, alo: usize, ahi: usize, blo: usize, bhi: usize) -> Match {
        let (a, b) = (self.a, self.b);
        let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0);
        // j2len[j] = length of the longest match ending with a[i-1] and b[j]
        let mut j2len: HashMap<usize, usize> = HashMap::new();
        let mut newj2len: HashMap<usize, usize> = HashMap::new();
        for (i, elt) in a.iter().enumerate().take(ahi).skip(alo) {
            newj2len.clear();
            if let Some(indices) = self.b2j.get(elt) {
                for &j in indices {
                    // a[i] matches b[j]
                    if j < blo {
                        continue;
                    }
                    if j >= bhi {
                        break;
                    }
                    let prev = match j.checked_sub(1) {
                        Some(jm1) => j2len.get(&jm1).copied().unwrap_or(0),
                        None => 0,
                    };
                    let k = prev + 1;
                    newj2len.insert(j, k);
                    if k > bestsize {
                        besti = i + 1 - k;
                        bestj = j + 1 - k;
                        bestsize = k;
                    }
                }
            }
            std::mem::swap(&mut j2len, &mut newj2len);
        }
        // Extend the best block with equal non-junk elements on both sides: this is how
        // popular elements (absent from b2j) still end up in matches. CPython's two
        // further loops extend over junk elements only; bjunk is empty without isjunk.
        while besti > alo && bestj > blo && a[besti - 1] == b[bestj - 1] {
            besti -= 1;
            bestj -= 1;
            bestsize += 1;
        }
        while besti + bestsize < ahi
            && bestj + bestsize < bhi
            && a[besti + bestsize] == b[bestj + bestsize]
        {
            bestsize += 1;
        }
        Match {
            a: besti,
            b: bestj,
            size: bestsize,
        }
    }

    /// `get_matching_blocks()`: non-adjacent matching blocks, ascending, ending with the
    /// dummy `(len(a), len(b), 0)`.
    pub fn get_matching_blocks(&self) -> Vec<Match> {
        let (la, lb) = (self.a.len(), self.b.len());
        // CPython uses an explicit LIFO queue rather than recursion.
        let mut queue = vec![(0, la, 0, lb)];
        let mut matching_blocks = Vec::new();
        while let Some((alo, ahi, blo, bhi)) = queue.pop() {
            let x = self.find_longest_match(alo, ahi, blo, bhi);
            let (i, j, k) = (x.a, x.b, x.size);
            if k > 0 {
                matching_blocks.push(x);
                if alo < i && blo < j {
                    queue.push((alo, i, blo, j));
                }
                if i + k < ahi && j + k < bhi {
                    queue.push((i + k, ahi, j + k, bhi));
                }
            }
        }
        matching_blocks.sort();
        // Collapse adjacent blocks.
        let (mut i1, mut j1, mut k1) = (0, 0, 0);
        let mut non_adjacent = Vec::new();
        for m in matching_blocks {
            if i1 + k1 == m.a && j1 + k1 == m.b {
                k1 += m.size;
            } else {
                if k1 > 0 {
                    non_adjacent.push(Match {
                        a: i1,
                        b: j1,
                        size: k1,
                    });
                }
                (i1, j1, k1) = (m.a, m.b, m.size);
            }
        }
        if k1 > 0 {
            non_adjacent.push(Match {
                a: i1,
                b: j1,
                size: k1,
            });
        }
        non_adjacent.push(Match {
            a: la,
            b: lb,
            size: 0,
        });
        non_adjacent
    }

    /// `ratio()`: `2.0 * M / T`, M the matched elements, T the total length (1.0 if 0).
    pub fn ratio(&self) -> f64 {
        let matches = self.get_matching_blocks().iter().map(|m| m.size).sum();
        calculate_ratio(matches, self.a.len() + self.b.len())
    }

    /// `quick_ratio()`: an upper bound on `ratio()`.
    pub fn quick_ratio(&self) -> f64 {
        quick_ratio(self.a, self.b)
    }

    /// `real_quick_ratio()`: an upper bound on `quick_ratio()`.
    pub fn real_quick_ratio(&self) -> f64 {
        let (la, lb) = (self.a.len(), self.b.len());
        calculate_ratio(la.min(lb), la + lb)
    }
}

// ---------------------------------------------------------------------------------------
// Errors and users
// ---------------------------------------------------------------------------------------

/// One `django.core.exceptions.ValidationError` raised by a validator: its `code` and its
/// message with the params already substituted (`message % params`, as rendered).
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub code: &'static str,
    pub message: String,
}

impl ValidationError {
    fn new(code: &'static str, message: String) -> Self {
        ValidationError { code, message }
    }
}

/// `str(User._meta.get_field(name).verbose_name)` for `django.contrib.auth.models.User`;
/// `None` where Django raises `FieldDoesNotExist`.
pub fn auth_user_verbose_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "id" => "ID",
        "password" => "password",
        "last_login" => "last login",
        "is_superuser" => "superuser status",
        "username" => "username",
        "first_name" => "first name",
        "last_name" => "last name",
        "email" => "email address",
        "is_staff" => "staff status",
        "is_active" => "active",
        "date_joined" => "date joined",
        "groups" => "groups",
        "user_permissions" => "user permissions",
        _ => return None,
    })
}

/// The user `UserAttributeSimilarityValidator` compares the password with.
///
/// Implemented for maps and vectors of `(attribute name, value)` pairs, which take their
/// verbose names from the default `auth.User` model.
pub trait UserAttributes {
    /// `getattr(user, name, None)` when that is a `str`; `None` when it is missing or not a
    /// string (Django skips those, and empty strings).
    fn attribute(&self, name: &str) -> Option<&str>;

    /// `str(user._meta.get_field(name).verbose_name)`, or `None` when `name` is not a model
    /// field (Django then names the attribute itself). Defaults to `auth.User`'s fields.
    fn verbose_name(&self, name: &str) -> Option<String> {
        auth_user_verbose_name(name).map(str::to_owned)
    }
}

impl<K: Borrow<str> + Ord, V: AsRef<str>> UserAttributes for BTreeMap<K, V> {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.get(name).map(AsRef::as_ref)
    }
}

impl<K: Borrow<str> + Eq + Hash, V: AsRef<str>, S: std::hash::BuildHasher> UserAttributes
    for HashMap<K, V, S>
{
    fn attribute(&self, name: &str) -> Option<&str> {
        self.get(name).map(AsRef::as_ref)
    }
}

fn pairs_attribute<'p, K: AsRef<str>, V: AsRef<str>>(
    pairs: &'p [(K, V)],
    name: &str,
) -> Option<&'p str> {
    pairs
        .iter()
        .find(|(k, _)| k.as_ref() == name)
        .map(|(_, v)| v.as_ref())
}

impl<K: AsRef<str>, V: AsRef<str>> UserAttributes for Vec<(K, V)> {
    fn attribute(&self, name: &str) -> Option<&str> {
        pairs_attribute(self, name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> UserAttributes for [(K, V); N] {
    fn attribute(&self, name: &str) -> Option<&str> {
        pairs_attribute(self, name)
    }
}

// ---------------------------------------------------------------------------------------
// The validators
// ---------------------------------------------------------------------------------------

/// `exceeds_maximum_length_ratio(password, max_similarity, value)`: skip values so much
/// shorter than the password that `quick_ratio` cannot reach `max_similarity`.
fn exceeds_maximum_length_ratio(pwd_len: usize, max_similarity: f64, value_len: usize) -> bool {
    // `max_similarity / 2 * pwd_len` in floats; CPython compares int with float exactly,
    // which `as f64` is for any length below 2^53.
    let length_bound_similarity = max_similarity / 2.0 * pwd_len as f64;
    pwd_len >= value_len.saturating_mul(10) && (value_len as f64) < length_bound_similarity
}

/// `UserAttributeSimilarityValidator(user_attributes=DEFAULT_USER_ATTRIBUTES,
/// max_similarity=0.7)`.
#[derive(Clone, Debug, PartialEq)]
pub struct UserAttributeSimilarityValidator {
    user_attributes: Vec<String>,
    max_similarity: f64,
}

impl Default for UserAttributeSimilarityValidator {
    fn default() -> Self {
        UserAttributeSimilarityValidator {
            user_attributes: Self::DEFAULT_USER_ATTRIBUTES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            max_similarity: Self::DEFAULT_MAX_SIMILARITY,
        }
    }
}

impl UserAttributeSimilarityValidator {
    pub const DEFAULT_USER_ATTRIBUTES: [&'static str; 4] =
        ["username", "first_name", "last_name", "email"];
    pub const DEFAULT_MAX_SIMILARITY: f64 = 0.7;

    /// Fails, as Django's `ValueError`, when `max_similarity < 0.1`.
    pub fn new(user_attributes: Vec<String>, max_similarity: f64) -> Result<Self, String> {
        if max_similarity < 0.1 {
            return Err("max_similarity must be at least 0.1".to_owned());
        }
        Ok(UserAttributeSimilarityValidator {
            user_attributes,
            max_similarity,
        })
    }

    pub fn user_attributes(&self) -> &[String] {
        &self.user_attributes
    }

    pub fn max_similarity(&self) -> f64 {
        self.max_similarity
    }

    /// Without a user there is nothing to compare (Django: `if not user: return`). Otherwise,
    /// for each attribute in order, each part of `re.split(r"\W+", value.lower())` and then
    /// the whole lowercased value is compared with `password.lower()`; the first part whose
    /// `quick_ratio()` reaches `max_similarity` fails (only one error, whatever the number
    /// of similar attributes).
    pub fn validate(
        &self,
        password: &str,
        user: Option<&dyn UserAttributes>,
    ) -> Result<(), ValidationError> {
        let Some(user) = user else {
            return Ok(());
        };
        let password: Vec<char> = py_lower(password).chars().collect();
        for attribute_name in &self.user_attributes {
            let value = match user.attribute(attribute_name) {
                Some(v) if !v.is_empty() => v,
                _ => continue,
            };
            let value_lower = py_lower(value);
            let mut value_parts = py_split_non_word(&value_lower);
            value_parts.push(&value_lower);
            for value_part in value_parts {
                let value_part: Vec<char> = value_part.chars().collect();
                if exceeds_maximum_length_ratio(
                    password.len(),
                    self.max_similarity,
                    value_part.len(),
                ) {
                    continue;
                }
                // SequenceMatcher(a=password, b=value_part).quick_ratio() >= max_similarity
                if quick_ratio(&password, &value_part) >= self.max_similarity {
                    let verbose_name = user
                        .verbose_name(attribute_name)
                        .unwrap_or_else(|| attribute_name.clone());
                    return Err(ValidationError::new(
                        "password_too_similar",
                        format!("The password is too similar to the {verbose_name}."),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn get_help_text(&self) -> String {
        "Your password can’t be too similar to your other personal information.".to_owned()
    }
}

/// `MinimumLengthValidator(min_length=8)`: at least `min_length` code points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MinimumLengthValidator {
    /// Any integer, as in Django (zero or less accepts every password).
    pub min_length: i64,
}

impl Default for MinimumLengthValidator {
    fn default() -> Self {
        MinimumLengthValidator { min_length: 8 }
    }
}

/// English `ngettext(singular, plural, n)`: the singular only for exactly 1.
fn english_plural(n: i64, singular: &'static str, plural: &'static str) -> &'static str {
    if n == 1 {
        singular
    } else {
        plural
    }
}

impl MinimumLengthValidator {
    pub fn new(min_length: i64) -> Self {
        MinimumLengthValidator { min_length }
    }

    pub fn validate(&self, password: &str) -> Result<(), ValidationError> {
        let len = i64::try_from(password.chars().count()).unwrap_or(i64::MAX);
        if len < self.min_length {
            return Err(ValidationError::new(
                "password_too_short",
                format!(
                    "This password is too short. It must contain at least {} {}.",
                    self.min_length,
                    english_plural(self.min_length, "character", "characters")
                ),
            ));
        }
        Ok(())
    }

    pub fn get_help_text(&self) -> String {
        format!(
            "Your password must contain at least {} {}.",
            self.min_length,
            english_plural(self.min_length, "character", "characters")
        )
    }
}

/// Django 5.2's `django/contrib/auth/common-passwords.txt.gz`, byte for byte (SHA-256
/// `3c1baed62596de36860824eb3f436d5932d37ca8b06e59df78f5a44ec175afe4`): 19,640 lowercased,
/// deduplicated passwords, replacing the 20,000-line list of Django ≤ 5.1.
static DJANGO_COMMON_PASSWORDS_GZ: &[u8] = include_bytes!("common-passwords.txt.gz");

fn default_password_list() -> &'static Arc<HashSet<Box<str>>> {
    static LIST: OnceLock<Arc<HashSet<Box<str>>>> = OnceLock::new();
    LIST.get_or_init(|| {
        Arc::new(
            parse_password_list(DJANGO_COMMON_PASSWORDS_GZ)
                .expect("the bundled common-passwords.txt.gz is valid (tested)"),
        )
    })
}

/// Decompress a single-member gzip file. Python's `gzip` also reads concatenated members;
/// libdeflate's one-shot API stops after the first, so a size mismatch with the trailer
/// (ISIZE, the length of the last member's output) is reported instead of ignored.
fn gunzip(data: &[u8]) -> Result<Vec<u8>, String> {
    const LIMIT: usize = 1 << 30;
    let isize_trailer = data
        .len()
        .checked_sub(4)
        .map(|at| u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]))
        .ok_or("truncated gzip file")?;
    // Deflate expands at most 1032:1, which bounds what a lying trailer can make us allocate.
    let limit = data.len().saturating_mul(1032).min(LIMIT);
    let mut capacity = (isize_trailer as usize).clamp(1, limit.max(1));
    let mut decompressor = libdeflater::Decompressor::new();
    loop {
        let mut out = vec![0u8; capacity];
        match decompressor.gzip_decompress(data, &mut out) {
            Ok(n) => {
                out.truncate(n);
                if n as u32 != isize_trailer {
                    return Err(
                        "data after the first gzip member (several members are not supported)"
                            .to_owned(),
                    );
                }
                return Ok(out);
            }
            Err(libdeflater::DecompressionError::InsufficientSpace) if capacity < limit => {
                capacity = capacity.saturating_mul(4).min(limit);
            }
            Err(libdeflater::DecompressionError::InsufficientSpace) => {
                return Err("gzip file too large or invalid".to_owned())
            }
            Err(libdeflater::DecompressionError::BadData) => {
                return Err("invalid gzip data".to_owned())
            }
        }
    }
}

/// What `CommonPasswordValidator.__init__` reads from `password_list_path`: gzip (by its
/// magic bytes, as `gzip.open` fails over to a plain `open`) or plain UTF-8 text, one
/// password per line. Lines are split like Python's text mode (universal newlines: `\n`,
/// `\r\n`, `\r`) and `strip()`ped; an empty line puts `""` in the set.
fn parse_password_list(data: &[u8]) -> Result<HashSet<Box<str>>, String> {
    let decompressed;
    let data = if data.starts_with(&[0x1f, 0x8b]) {
        decompressed = gunzip(data)?;
        &decompressed[..]
    } else {
        data
    };
    let text = std::str::from_utf8(data).map_err(|e| format!("password list is not UTF-8: {e}"))?;
    let mut passwords = HashSet::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (line, next) = match rest.find(['\r', '\n']) {
            Some(at) if rest[at..].starts_with("\r\n") => (&rest[..at], &rest[at + 2..]),
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, ""),
        };
        passwords.insert(Box::from(py_strip(line)));
        rest = next;
    }
    Ok(passwords)
}

/// `CommonPasswordValidator(password_list_path=DEFAULT_PASSWORD_LIST_PATH)`: rejects
/// passwords whose `password.lower().strip()` is in the list.
#[derive(Clone)]
pub struct CommonPasswordValidator {
    passwords: Arc<HashSet<Box<str>>>,
}

impl Default for CommonPasswordValidator {
    /// Django 5.2's bundled list (decompressed once per process).
    fn default() -> Self {
        CommonPasswordValidator {
            passwords: Arc::clone(default_password_list()),
        }
    }
}

impl fmt::Debug for CommonPasswordValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommonPasswordValidator")
            .field("passwords", &self.passwords.len())
            .finish()
    }
}

impl CommonPasswordValidator {
    /// A validator over the contents of a `password_list_path` file (gzip or plain text).
    /// Entries must be lowercase to ever match, as in Django.
    pub fn from_list_bytes(data: &[u8]) -> Result<Self, String> {
        Ok(CommonPasswordValidator {
            passwords: Arc::new(parse_password_list(data)?),
        })
    }

    /// The number of distinct entries.
    pub fn len(&self) -> usize {
        self.passwords.len()
    }

    pub fn is_empty(&self) -> bool {
        self.passwords.is_empty()
    }

    pub fn validate(&self, password: &str) -> Result<(), ValidationError> {
        if self.passwords.contains(py_strip(&py_lower(password))) {
            return Err(ValidationError::new(
                "password_too_common",
                "This password is too common.".to_owned(),
            ));
        }
        Ok(())
    }

    pub fn get_help_text(&self) -> String {
        "Your password can’t be a commonly used password.".to_owned()
    }
}

/// `NumericPasswordValidator`: rejects passwords for which `password.isdigit()`, i.e. made
/// only of Unicode digits (`١٢٣٤٥٦٧٨`, `²³⁴⁵⁶⁷⁸⁹` and `①②③④⑤⑥⑦⑧` included; fractions,
/// Roman numerals and CJK numerals are not digits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NumericPasswordValidator;

impl NumericPasswordValidator {
    pub fn validate(&self, password: &str) -> Result<(), ValidationError> {
        if py_isdigit(password) {
            return Err(ValidationError::new(
                "password_entirely_numeric",
                "This password is entirely numeric.".to_owned(),
            ));
        }
        Ok(())
    }

    pub fn get_help_text(&self) -> String {
        "Your password can’t be entirely numeric.".to_owned()
    }
}

/// One configured validator.
#[derive(Clone, Debug)]
pub enum Validator {
    UserAttributeSimilarity(UserAttributeSimilarityValidator),
    MinimumLength(MinimumLengthValidator),
    CommonPassword(CommonPasswordValidator),
    Numeric(NumericPasswordValidator),
}

impl Validator {
    /// The class name, as after `django.contrib.auth.password_validation.`.
    pub fn class_name(&self) -> &'static str {
        match self {
            Validator::UserAttributeSimilarity(_) => "UserAttributeSimilarityValidator",
            Validator::MinimumLength(_) => "MinimumLengthValidator",
            Validator::CommonPassword(_) => "CommonPasswordValidator",
            Validator::Numeric(_) => "NumericPasswordValidator",
        }
    }

    /// The dotted path used as `NAME` in `AUTH_PASSWORD_VALIDATORS`.
    pub fn name(&self) -> String {
        format!("{MODULE}.{}", self.class_name())
    }

    /// `validator.validate(password, user)`.
    pub fn validate(
        &self,
        password: &str,
        user: Option<&dyn UserAttributes>,
    ) -> Result<(), ValidationError> {
        match self {
            Validator::UserAttributeSimilarity(v) => v.validate(password, user),
            Validator::MinimumLength(v) => v.validate(password),
            Validator::CommonPassword(v) => v.validate(password),
            Validator::Numeric(v) => v.validate(password),
        }
    }

    /// `validator.get_help_text()`.
    pub fn get_help_text(&self) -> String {
        match self {
            Validator::UserAttributeSimilarity(v) => v.get_help_text(),
            Validator::MinimumLength(v) => v.get_help_text(),
            Validator::CommonPassword(v) => v.get_help_text(),
            Validator::Numeric(v) => v.get_help_text(),
        }
    }
}

/// `validate_password(password, user, password_validators)`: runs every validator in order
/// and returns all their errors (at most one each), or `Ok` when there are none (always
/// the case with no validators, Django's global default).
pub fn validate_password(
    password: &str,
    user: Option<&dyn UserAttributes>,
    validators: &[Validator],
) -> Result<(), Vec<ValidationError>> {
    let errors: Vec<ValidationError> = validators
        .iter()
        .filter_map(|v| v.validate(password, user).err())
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// `password_validators_help_texts(password_validators)`.
pub fn password_validators_help_texts(validators: &[Validator]) -> Vec<String> {
    validators.iter().map(Validator::get_help_text).collect()
}

/// `django.utils.html.escape`.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(c),
        }
    }
    out
}

/// `password_validators_help_text_html(password_validators)`: `<ul><li>…</li>…</ul>` with
/// each help text escaped, or `""` without validators.
pub fn password_validators_help_text_html(validators: &[Validator]) -> String {
    if validators.is_empty() {
        return String::new();
    }
    let items: String = validators
        .iter()
        .map(|v| format!("<li>{}</li>", html_escape(&v.get_help_text())))
        .collect();
    format!("<ul>{items}</ul>")
}

// ---------------------------------------------------------------------------------------
// AUTH_PASSWORD_VALIDATORS
// ---------------------------------------------------------------------------------------

/// One entry of `AUTH_PASSWORD_VALIDATORS`: `{"NAME": dotted path, "OPTIONS": {...}}`
/// (other keys are ignored, as Django ignores them).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ValidatorEntry {
    #[serde(rename = "NAME")]
    pub name: String,
    #[serde(rename = "OPTIONS", default)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl ValidatorEntry {
    /// An entry for one of the four validators, by class name, without options.
    pub fn new(class_name: &str) -> Self {
        ValidatorEntry {
            name: format!("{MODULE}.{class_name}"),
            options: serde_json::Map::new(),
        }
    }
}

/// What `django-admin startproject` writes: the four validators with their defaults.
/// (Django's own default, `global_settings.AUTH_PASSWORD_VALIDATORS`, is `[]`.)
pub fn startproject_setting() -> Vec<ValidatorEntry> {
    [
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    ]
    .into_iter()
    .map(ValidatorEntry::new)
    .collect()
}

/// `get_password_validators(AUTH_PASSWORD_VALIDATORS)`. A `password_list_path` option needs
/// file I/O, which this module does not do: use [`from_setting_with_loader`] for those.
pub fn from_setting(entries: &[ValidatorEntry]) -> Result<Vec<Validator>, String> {
    from_setting_with_loader(entries, &mut |path| {
        Err(format!(
            "password_list_path {path:?} needs a file loader (use from_setting_with_loader)"
        ))
    })
}

/// [`from_setting`], reading each `password_list_path` with `load` (which returns the
/// file's bytes).
pub fn from_setting_with_loader(
    entries: &[ValidatorEntry],
    load: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
) -> Result<Vec<Validator>, String> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            build_validator(entry, load)
                .map_err(|e| format!("AUTH_PASSWORD_VALIDATORS[{i}] ({}): {e}", entry.name))
        })
        .collect()
}

fn build_validator(
    entry: &ValidatorEntry,
    load: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
) -> Result<Validator, String> {
    let class_name = entry
        .name
        .strip_prefix(MODULE)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or("");
    let allowed: &[&str] = match class_name {
        "UserAttributeSimilarityValidator" => &["user_attributes", "max_similarity"],
        "MinimumLengthValidator" => &["min_length"],
        "CommonPasswordValidator" => &["password_list_path"],
        "NumericPasswordValidator" => &[],
        _ => {
            return Err(format!(
                "unknown password validator; djauth implements Django's four: \
                 {MODULE}.UserAttributeSimilarityValidator, {MODULE}.MinimumLengthValidator, \
                 {MODULE}.CommonPasswordValidator and {MODULE}.NumericPasswordValidator"
            ))
        }
    };
    if let Some(unknown) = entry
        .options
        .keys()
        .find(|k| !allowed.contains(&k.as_str()))
    {
        return Err(format!(
            "unexpected option {unknown:?} (Django: __init__() got an unexpected keyword \
             argument '{unknown}'); {class_name} accepts {}",
            if allowed.is_empty() {
                "no options".to_owned()
            } else {
                allowed.join(", ")
            }
        ));
    }
    let opt = |key: &str| entry.options.get(key);
    Ok(match class_name {
        "UserAttributeSimilarityValidator" => {
            let user_attributes = match opt("user_attributes") {
                None => UserAttributeSimilarityValidator::DEFAULT_USER_ATTRIBUTES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .map(|item| {
                        item.as_str().map(str::to_owned).ok_or_else(|| {
                            format!("user_attributes must be a list of strings, not {item}")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(other) => {
                    return Err(format!(
                        "user_attributes must be a list of strings, not {other}"
                    ))
                }
            };
            let max_similarity = match opt("max_similarity") {
                None => UserAttributeSimilarityValidator::DEFAULT_MAX_SIMILARITY,
                Some(v) => v
                    .as_f64()
                    .ok_or_else(|| format!("max_similarity must be a number, not {v}"))?,
            };
            Validator::UserAttributeSimilarity(UserAttributeSimilarityValidator::new(
                user_attributes,
                max_similarity,
            )?)
        }
        "MinimumLengthValidator" => {
            let min_length = match opt("min_length") {
                None => 8,
                Some(v) => v
                    .as_i64()
                    .ok_or_else(|| format!("min_length must be an integer, not {v}"))?,
            };
            Validator::MinimumLength(MinimumLengthValidator::new(min_length))
        }
        "CommonPasswordValidator" => match opt("password_list_path") {
            None => Validator::CommonPassword(CommonPasswordValidator::default()),
            Some(serde_json::Value::String(path)) => {
                let bytes = load(path)?;
                Validator::CommonPassword(
                    CommonPasswordValidator::from_list_bytes(&bytes)
                        .map_err(|e| format!("password_list_path {path:?}: {e}"))?,
                )
            }
            Some(other) => return Err(format!("password_list_path must be a string, not {other}")),
        },
        _ => Validator::Numeric(NumericPasswordValidator),
    })
}

/// The validators `startproject`'s setting configures.
pub fn startproject_validators() -> Vec<Validator> {
    vec![
        Validator::UserAttributeSimilarity(UserAttributeSimilarityValidator::default()),
        Validator::MinimumLength(MinimumLengthValidator::default()),
        Validator::CommonPassword(CommonPasswordValidator::default()),
        Validator::Numeric(NumericPasswordValidator),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};
    use sha2::{Digest, Sha256};

    /// Produced by running real Django 5.2.19 on CPython 3.11.7 (the `/tmp/dj52` venv) with
    /// the script stored in the file's own `generator` field:
    /// `python gen_vectors.py src/formats/validators_vectors.json`. It calls
    /// `validate_password(password, User(...), get_password_validators(config))` on unsaved
    /// `auth.User` instances (extra attributes set with `setattr`) and records each error's
    /// `code` and rendered message, the help texts, and `difflib.SequenceMatcher` results.
    const VECTORS: &str = include_str!("validators_vectors.json");

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).unwrap()
    }

    fn configs(v: &Value) -> Vec<Vec<Validator>> {
        v["configs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let entries: Vec<ValidatorEntry> = serde_json::from_value(c.clone()).unwrap();
                from_setting(&entries).unwrap()
            })
            .collect()
    }

    #[test]
    fn matches_django_on_recorded_cases() {
        let v = vectors();
        assert_eq!(v["django"], "5.2.19");
        let configs = configs(&v);
        let mut failures = Vec::new();
        let mut count = 0;
        for group in v["groups"].as_array().unwrap() {
            let validators = &configs[group["config"].as_u64().unwrap() as usize];
            let user: Option<BTreeMap<String, String>> =
                serde_json::from_value(group["user"].clone()).unwrap();
            for result in group["results"].as_array().unwrap() {
                count += 1;
                let password = result[0].as_str().unwrap();
                let expected: Vec<(String, String)> =
                    serde_json::from_value(result[1].clone()).unwrap();
                let got: Vec<(String, String)> = match validate_password(
                    password,
                    user.as_ref().map(|u| u as &dyn UserAttributes),
                    validators,
                ) {
                    Ok(()) => vec![],
                    Err(errors) => errors
                        .into_iter()
                        .map(|e| (e.code.to_owned(), e.message))
                        .collect(),
                };
                if got != expected {
                    failures.push(format!(
                        "config {} user {} password {password:?}: expected {expected:?}, got {got:?}",
                        group["config"], group["user"]
                    ));
                }
            }
        }
        assert!(count > 1000);
        assert!(
            failures.is_empty(),
            "{} mismatches:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn help_texts_match_django() {
        let v = vectors();
        let configs = configs(&v);
        for h in v["help_texts"].as_array().unwrap() {
            let validators = &configs[h["config"].as_u64().unwrap() as usize];
            let texts: Vec<String> = serde_json::from_value(h["texts"].clone()).unwrap();
            assert_eq!(password_validators_help_texts(validators), texts);
            assert_eq!(password_validators_help_text_html(validators), h["html"]);
        }
    }

    #[test]
    fn sequence_matcher_matches_difflib() {
        let v = vectors();
        let mut autojunk_cases = 0;
        for case in v["sequence_matcher"].as_array().unwrap() {
            let a: Vec<char> = case["a"].as_str().unwrap().chars().collect();
            let b: Vec<char> = case["b"].as_str().unwrap().chars().collect();
            let sm = SequenceMatcher::new(&a, &b);
            let blocks: Vec<Vec<usize>> = serde_json::from_value(case["blocks"].clone()).unwrap();
            let got: Vec<Vec<usize>> = sm
                .get_matching_blocks()
                .iter()
                .map(|m| vec![m.a, m.b, m.size])
                .collect();
            assert_eq!(got, blocks, "{case}");
            assert_eq!(sm.ratio(), case["ratio"].as_f64().unwrap(), "{case}");
            assert_eq!(
                sm.quick_ratio(),
                case["quick_ratio"].as_f64().unwrap(),
                "{case}"
            );
            assert_eq!(
                sm.real_quick_ratio(),
                case["real_quick_ratio"].as_f64().unwrap()
            );
            if case["autojunk_matters"] == true {
                autojunk_cases += 1;
                assert!(!sm.popular().is_empty());
                let plain = SequenceMatcher::with_autojunk(&a, &b, false);
                assert_ne!(plain.ratio(), sm.ratio(), "{case}");
            }
        }
        assert!(autojunk_cases >= 10, "the vectors exercise autojunk");
    }

    #[test]
    fn sequence_matcher_doc_examples() {
        // Examples from CPython's Lib/difflib.py docstrings.
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        let (a, b) = (chars(" abcd"), chars("abcd abcd"));
        let m = SequenceMatcher::new(&a, &b).find_longest_match(0, 5, 0, 9);
        assert_eq!((m.a, m.b, m.size), (0, 4, 5));
        let (a, b) = (chars("ab"), chars("c"));
        let m = SequenceMatcher::new(&a, &b).find_longest_match(0, 2, 0, 1);
        assert_eq!((m.a, m.b, m.size), (0, 0, 0));
        let (a, b) = (chars("abcd"), chars("bcde"));
        assert_eq!(SequenceMatcher::new(&a, &b).ratio(), 0.75);
        let (a, b): (&[char], &[char]) = (&[], &[]);
        assert_eq!(SequenceMatcher::new(a, b).ratio(), 1.0);
    }

    /// Every code point's `\w`, `isdigit()` and `isspace()`, and `lower()` alone and in
    /// final-sigma contexts, against digests CPython 3.11 computed (see the tables' header).
    #[test]
    fn unicode_behaviour_matches_cpython_311() {
        let chars = || (0u32..0x110000).filter_map(char::from_u32);
        let mut flags = Sha256::new();
        for c in chars() {
            let f = py_is_word_char(c) as u8
                | (py_isdigit(c.encode_utf8(&mut [0; 4])) as u8) << 1
                | (py_is_space_char(c) as u8) << 2;
            flags.update([f]);
        }
        assert_eq!(hex(&flags.finalize()), FLAGS_SHA256);

        let mut lower = Sha256::new();
        let mut buf = String::new();
        for c in chars() {
            use std::fmt::Write;
            buf.clear();
            writeln!(
                buf,
                "{:x}\t{}\t{}\t{}\t{}",
                c as u32,
                py_lower(&c.to_string()),
                py_lower(&format!("A{c}Σ")),
                py_lower(&format!("{c}Σ")),
                py_lower(&format!("AΣ{c}")),
            )
            .unwrap();
            lower.update(buf.as_bytes());
        }
        assert_eq!(hex(&lower.finalize()), LOWER_SHA256);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn python_string_helpers() {
        assert_eq!(py_split_non_word("a@b.com"), ["a", "b", "com"]);
        assert_eq!(py_split_non_word("@x"), ["", "x"]);
        assert_eq!(py_split_non_word("x@"), ["x", ""]);
        assert_eq!(py_split_non_word("@@"), ["", ""]);
        assert_eq!(py_split_non_word(""), [""]);
        assert_eq!(py_split_non_word("हिन्दी"), ["ह", "न", "द", ""]);
        assert_eq!(py_lower("İ"), "i\u{307}");
        assert_eq!(py_lower("ΣΊΣΥΦΟΣ"), "σίσυφος");
        // U+1C89 (Unicode 16) has a lowercase in Rust, none in CPython 3.11.
        assert_eq!(py_lower("\u{1C89}Σ"), "\u{1C89}σ");
        // Cased in Unicode 14 (CPython 3.11), not in Rust's newer Unicode.
        assert_eq!(py_lower("ʕΣ"), "ʕς");
        assert_eq!(py_lower("A\u{1171E}Σ"), "a\u{1171E}ς");
        assert_eq!(py_lower("AΣʕ"), "aσʕ");
        assert_eq!(py_lower("AΣ'Σ' x"), "aσ'ς' x");
        assert_eq!(py_strip("\x1c\u{85}\u{a0} x \u{3000}\x1f"), "x");
        assert_eq!(py_strip("\u{200b}x"), "\u{200b}x");
        assert!(py_isdigit("²١①𝟏"));
        assert!(!py_isdigit("½") && !py_isdigit("Ⅷ") && !py_isdigit("一") && !py_isdigit(""));
    }

    #[test]
    fn bundled_list_is_djangos() {
        let v = CommonPasswordValidator::default();
        assert_eq!(v.len(), 19_640);
        let digest = Sha256::digest(DJANGO_COMMON_PASSWORDS_GZ);
        assert_eq!(
            hex(&digest),
            "3c1baed62596de36860824eb3f436d5932d37ca8b06e59df78f5a44ec175afe4"
        );
        assert!(v.validate("PassWord ").is_err());
        assert!(v.validate("").is_ok());
    }

    #[test]
    fn custom_password_lists() {
        let plain =
            CommonPasswordValidator::from_list_bytes(b"hunter2\r\n swordfish \rtrustno1").unwrap();
        assert_eq!(plain.len(), 3);
        assert!(plain.validate(" Swordfish").is_err());
        assert!(plain.validate("TRUSTNO1").is_err());
        assert!(plain.validate("").is_ok());
        // An empty line makes the empty password (after strip) "common", as in Django.
        let with_blank = CommonPasswordValidator::from_list_bytes(b"a\n\nb\n").unwrap();
        assert_eq!(with_blank.len(), 3);
        assert!(with_blank.validate("   ").is_err());
        assert!(CommonPasswordValidator::from_list_bytes(b"")
            .unwrap()
            .is_empty());

        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
        let text = b"alpha\nbeta\n";
        let mut gz = vec![0; c.gzip_compress_bound(text.len())];
        let n = c.gzip_compress(text, &mut gz).unwrap();
        gz.truncate(n);
        let v = CommonPasswordValidator::from_list_bytes(&gz).unwrap();
        assert_eq!(v.len(), 2);
        assert!(v.validate("Beta").is_err());
        let mut two = gz.clone();
        two.extend_from_slice(&gz[..n - 1]);
        two.push(0xff);
        assert!(CommonPasswordValidator::from_list_bytes(&two).is_err());
        assert!(CommonPasswordValidator::from_list_bytes(&gz[..n - 3]).is_err());
        assert!(CommonPasswordValidator::from_list_bytes(&[0x1f, 0x8b]).is_err());
        assert!(CommonPasswordValidator::from_list_bytes(b"\xff\n").is_err());

        let entries: Vec<ValidatorEntry> = serde_json::from_value(json!([
            {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator",
             "OPTIONS": {"password_list_path": "/etc/words"}}
        ]))
        .unwrap();
        assert!(from_setting(&entries).unwrap_err().contains("loader"));
        let mut asked = Vec::new();
        let validators = from_setting_with_loader(&entries, &mut |p| {
            asked.push(p.to_owned());
            Ok(b"letmein\n".to_vec())
        })
        .unwrap();
        assert_eq!(asked, ["/etc/words"]);
        assert_eq!(
            validate_password("LetMeIn", None, &validators).unwrap_err()[0].code,
            "password_too_common"
        );
    }

    #[test]
    fn settings() {
        assert!(from_setting(&[]).unwrap().is_empty());
        assert_eq!(validate_password("", None, &[]), Ok(()));
        let startproject = from_setting(&startproject_setting()).unwrap();
        let names: Vec<String> = startproject.iter().map(Validator::name).collect();
        let direct: Vec<String> = startproject_validators()
            .iter()
            .map(Validator::name)
            .collect();
        assert_eq!(names, direct);
        assert_eq!(
            names[0],
            "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
        );
        // Django's settings shape, extra keys ignored, OPTIONS optional.
        let entries: Vec<ValidatorEntry> = serde_json::from_value(json!([
            {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
             "OPTIONS": {"min_length": 12}, "COMMENT": "ignored"},
            {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
             "OPTIONS": {"user_attributes": ["email"], "max_similarity": 1}},
        ]))
        .unwrap();
        let v = from_setting(&entries).unwrap();
        assert!(matches!(&v[0], Validator::MinimumLength(m) if m.min_length == 12));
        assert!(
            matches!(&v[1], Validator::UserAttributeSimilarity(u) if u.max_similarity() == 1.0 && u.user_attributes() == ["email"])
        );

        let err = |value: Value| {
            let entries: Vec<ValidatorEntry> = serde_json::from_value(value).unwrap();
            from_setting(&entries).unwrap_err()
        };
        let p = "django.contrib.auth.password_validation.";
        let e = err(json!([{"NAME": "myapp.validators.Custom"}]));
        assert!(
            e.contains("myapp.validators.Custom") && e.contains("unknown"),
            "{e}"
        );
        assert!(err(json!([{"NAME": format!("{p}Nope")}])).contains("unknown"));
        let e = err(json!([{"NAME": format!("{p}NumericPasswordValidator"), "OPTIONS": {"x": 1}}]));
        assert!(e.contains("\"x\"") && e.contains("no options"), "{e}");
        let e = err(json!([{"NAME": format!("{p}MinimumLengthValidator"), "OPTIONS": {"min": 1}}]));
        assert!(e.contains("\"min\"") && e.contains("min_length"), "{e}");
        assert!(err(json!([{"NAME": format!("{p}MinimumLengthValidator"),
            "OPTIONS": {"min_length": 8.5}}]))
        .contains("integer"));
        assert!(err(
            json!([{"NAME": format!("{p}UserAttributeSimilarityValidator"),
            "OPTIONS": {"max_similarity": 0.09}}])
        )
        .contains("max_similarity must be at least 0.1"));
        assert!(err(
            json!([{"NAME": format!("{p}UserAttributeSimilarityValidator"),
            "OPTIONS": {"user_attributes": "username"}}])
        )
        .contains("list of strings"));
        assert!(err(
            json!([{"NAME": format!("{p}UserAttributeSimilarityValidator"),
            "OPTIONS": {"max_similarity": "0.5"}}])
        )
        .contains("number"));
        assert!(serde_json::from_value::<Vec<ValidatorEntry>>(json!([{"OPTIONS": {}}])).is_err());
        assert!(UserAttributeSimilarityValidator::new(vec![], 0.1).is_ok());
    }

    #[test]
    fn user_attribute_impls() {
        let v = UserAttributeSimilarityValidator::default();
        let e = v
            .validate("alice123", Some(&[("username", "alice")]))
            .unwrap_err();
        assert_eq!(e.code, "password_too_similar");
        assert_eq!(
            e.to_string(),
            "The password is too similar to the username."
        );
        let mut m = HashMap::new();
        m.insert("email".to_owned(), "alice@example.com".to_owned());
        assert_eq!(
            v.validate("alice123", Some(&m)).unwrap_err().message,
            "The password is too similar to the email address."
        );
        let pairs = vec![("nick".to_owned(), "alice")];
        let custom = UserAttributeSimilarityValidator::new(vec!["nick".into()], 0.7).unwrap();
        assert_eq!(
            custom
                .validate("alice123", Some(&pairs))
                .unwrap_err()
                .message,
            "The password is too similar to the nick."
        );
        assert!(v.validate("alice123", None).is_ok());
        // Empty password, value starting with a non-word character: the empty first part
        // gives quick_ratio("", "") == 1.0.
        assert!(v.validate("", Some(&[("email", "@example.com")])).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(
            password in ".{0,300}",
            attrs in proptest::collection::vec(("[a-z_]{1,10}", ".{0,40}"), 0..5),
            min_length in any::<i64>(),
            max_similarity in 0.1f64..2.0,
        ) {
            let names: Vec<String> = attrs.iter().map(|(k, _)| k.clone()).collect();
            let validators = vec![
                Validator::UserAttributeSimilarity(UserAttributeSimilarityValidator::new(names, max_similarity).unwrap()),
                Validator::UserAttributeSimilarity(UserAttributeSimilarityValidator::default()),
                Validator::MinimumLength(MinimumLengthValidator::new(min_length)),
                Validator::CommonPassword(CommonPasswordValidator::default()),
                Validator::Numeric(NumericPasswordValidator),
            ];
            let _ = validate_password(&password, Some(&attrs), &validators);
            let _ = password_validators_help_text_html(&validators);
        }

        #[test]
        fn ratios_are_ordered(a in "[ab\u{e9}Σ]{0,250}", b in "[abc\u{e9}]{0,250}") {
            let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            let sm = SequenceMatcher::new(&a, &b);
            let (r, q, rq) = (sm.ratio(), sm.quick_ratio(), sm.real_quick_ratio());
            prop_assert!(r <= q && q <= rq && rq <= 1.0 && r >= 0.0);
        }

        #[test]
        fn list_parsing_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = CommonPasswordValidator::from_list_bytes(&data);
            let mut gz = vec![0x1f, 0x8b];
            gz.extend_from_slice(&data);
            let _ = CommonPasswordValidator::from_list_bytes(&gz);
        }
    }
}
