//! Typos of known keys. An unknown handler key is metadata, as in AIT, unless it
//! is within a few edits of a key bsc knows: then it is almost surely that key
//! misspelt (`max_file`, `rotate_log_idex`), and taking it as metadata would
//! silently drop the setting. Pure functions; the callers decide the error.
//!
//! The rule: [`edit_distance`] (optimal string alignment, lower-cased) at most
//! [`allowed_edits`] of the key's length: for keys of up to 5 characters only a
//! swap of two adjacent letters (`prot`), 1 edit up to 11 characters, 2 beyond.
//! Tuned so that real metadata (`pass`, `mission`, `station`, `orbit`,
//! `spacecraft`, `vcid`, `apid`, `site`, `antenna`, `band`, `lat`, `lon`, `part`,
//! `post`, `names`, `max_rate`, `min_age`, `min_files`) stays metadata, while
//! `max_file`, `prot`, `conn_typ`, `adress` or `fsync_interval` are typos.

/// The optimal string alignment distance between `a` and `b`, over characters:
/// the fewest insertions, deletions, substitutions and swaps of two adjacent
/// characters that turn one into the other, no character edited twice
/// (Damerau-Levenshtein restricted so; `ab` → `ba` is 1).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between a[..i] and b[..j]; three rows suffice.
    let width = b.len() + 1;
    let mut before: Vec<usize> = vec![0; width];
    let mut previous: Vec<usize> = (0..width).collect();
    let mut current: Vec<usize> = vec![0; width];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1) // delete a[i-1]
                .min(current[j - 1] + 1) // insert b[j-1]
                .min(previous[j - 1] + cost); // substitute
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1); // swap the last two
            }
            current[j] = d;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// How many edits from a known key a key of `len` characters may be and still be
/// taken for a typo of it.
pub fn allowed_edits(len: usize) -> usize {
    if len <= 11 {
        1
    } else {
        2
    }
}

/// Whether `a` is `b` with two adjacent characters swapped.
fn is_adjacent_swap(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() != b.len() {
        return false;
    }
    let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    diff.len() == 2
        && diff[1] == diff[0] + 1
        && a[diff[0]] == b[diff[1]]
        && a[diff[1]] == b[diff[0]]
}

/// The known key that `key` is a typo of: the nearest in `known` (compared
/// with ASCII letters lower-case, as keys are ASCII; `str::to_lowercase`
/// would bring Unicode's 11 KB case table into the binary) within [`allowed_edits`], the first listed on a tie. `None` when
/// `key` is itself known or nothing is that near.
pub fn suggestion<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    if known.contains(&key) {
        return None;
    }
    let lower = key.to_ascii_lowercase();
    let short = key.chars().count() <= 5;
    let allowed = allowed_edits(key.chars().count());
    known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| {
            *d <= allowed && (!short || is_adjacent_swap(&lower, &k.to_ascii_lowercase()))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The words of an error for a key that is a typo of `known`.
pub fn did_you_mean(known: &str) -> String {
    format!("did you mean {known:?}?")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{API_KEYS, HANDLER_KEYS};
    use proptest::prelude::*;

    #[test]
    fn distances() {
        for (a, b, d) in [
            ("", "", 0),
            ("a", "", 1),
            ("", "abc", 3),
            ("port", "port", 0),
            ("prot", "port", 1), // one swap
            ("ab", "ba", 1),
            ("abc", "ca", 3), // OSA, not full Damerau-Levenshtein (2)
            ("max_file", "max_files", 1),
            ("rotate_log_idex", "rotate_log_index", 1),
            ("file_name_patern", "file_name_pattern", 1),
            ("fsync_interval", "fsync_interval_s", 2),
            ("conn_typ", "conn_type", 1),
            ("adress", "address", 1),
            ("kitten", "sitting", 3),
            ("pass", "path", 2),
            ("apid", "path", 3),
            ("name", "nmae", 1),
            ("naem", "name", 1),
            ("émis", "emis", 1), // characters, not bytes
        ] {
            assert_eq!(edit_distance(a, b), d, "{a:?} {b:?}");
            assert_eq!(edit_distance(b, a), d, "{b:?} {a:?}");
        }
    }

    #[test]
    fn typos_of_handler_keys_are_caught_and_metadata_is_not() {
        let api: Vec<&str> = HANDLER_KEYS
            .iter()
            .chain(API_KEYS.iter())
            .copied()
            .collect();
        for (typo, meant) in [
            ("max_file", "max_files"),
            ("rotate_log_idex", "rotate_log_index"),
            ("rotate_max_byte", "rotate_max_bytes"),
            ("file_name_patern", "file_name_pattern"),
            ("fsync_interval", "fsync_interval_s"),
            ("prot", "port"),
            ("conn_typ", "conn_type"),
            ("adress", "address"),
            ("Max_Files", "max_files"),
            ("timestamp", "timestamps"),
            ("rotatelog", "rotate_log"),
        ] {
            assert_eq!(suggestion(typo, &api), Some(meant), "{typo}");
        }
        for metadata in [
            // Real metadata an earlier rule took for typos (review).
            "lat",
            "lon",
            "part",
            "post",
            "log",
            "sort",
            "sport",
            "ports",
            "names",
            "named",
            "patch",
            "path1",
            "max_rate",
            "min_age",
            "min_files",
            "min_bytes",
            "scname",
            "pass",
            "mission",
            "station",
            "orbit",
            "spacecraft",
            "vcid",
            "apid",
            "site",
            "antenna",
            "band",
            "sat",
            "host",
            "scid",
            "mode",
            "type",
            "frame",
            "source",
            "version",
            "channel",
            "max_size",
            "a",
            "k12",
        ] {
            assert_eq!(suggestion(metadata, &api), None, "{metadata}");
        }
        for known in api.iter() {
            assert_eq!(suggestion(known, &api), None, "{known}");
        }
        // `prot` is a typo only where `port` is a key: over the API, not in a file.
        assert_eq!(suggestion("prot", &HANDLER_KEYS), None);
    }

    proptest! {
        #[test]
        fn distance_is_a_metric_of_sorts(a in "[a-c_]{0,8}", b in "[a-c_]{0,8}") {
            prop_assert_eq!(edit_distance(&a, &b), edit_distance(&b, &a));
            prop_assert_eq!(edit_distance(&a, &b) == 0, a == b);
            prop_assert!(edit_distance(&a, &b) <= a.chars().count().max(b.chars().count()));
        }

        #[test]
        fn one_adjacent_swap_is_one_edit(s in "[a-z_]{2,12}", at in 0usize..11) {
            let mut chars: Vec<char> = s.chars().collect();
            let i = at % (chars.len() - 1);
            prop_assume!(chars[i] != chars[i + 1]);
            chars.swap(i, i + 1);
            let swapped: String = chars.into_iter().collect();
            prop_assert_eq!(edit_distance(&s, &swapped), 1);
        }
    }
}
