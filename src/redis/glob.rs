//! Redis's glob-style pattern matching (`stringmatchlen`), ported to match its results exactly:
//! `*`, `?`, `[abc]`, `[^a-z]`, `\x`. Used by COMMAND LIST and CONFIG GET, later KEYS and SCAN.
//!
//! Like Redis, a failed `*` expansion gives up on the whole match instead of backtracking into
//! earlier `*`s, so a hostile pattern costs O(pattern × text), never exponential time.

/// Redis's `stringmatchlen`: `*`, `?`, `[...]` with ranges and `^`, and `\` escapes;
/// `nocase` folds ASCII case as C's `tolower` does.
pub fn glob_match(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    let mut give_up = false;
    glob_from(pattern, 0, string, 0, nocase, &mut give_up)
}

/// The recursive body of [`glob_match`] from pattern index `pi` and string index `si`.
/// `give_up` is Redis's guard against exponential backtracking: once the rest of the
/// pattern after a `*` fails at every position, earlier `*`s cannot help either.
fn glob_from(
    pat: &[u8],
    mut pi: usize,
    s: &[u8],
    mut si: usize,
    nocase: bool,
    give_up: &mut bool,
) -> bool {
    let same = |a: u8, b: u8| {
        if nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let fold = |c: i32| if nocase { c_lower(c) } else { c };
    // Redis reads the pattern as a C string: past its end is a NUL byte.
    let at = |i: usize| pat.get(i).copied().unwrap_or(0);
    while pi < pat.len() && si < s.len() {
        match pat[pi] {
            b'*' => {
                while pi < pat.len() && at(pi + 1) == b'*' {
                    pi += 1;
                }
                if pat.len() - pi == 1 {
                    return true;
                }
                while si < s.len() {
                    if glob_from(pat, pi + 1, s, si, nocase, give_up) {
                        return true;
                    }
                    if *give_up {
                        return false;
                    }
                    si += 1;
                }
                *give_up = true;
                return false;
            }
            b'?' => si += 1,
            b'[' => {
                pi += 1;
                let negate = at(pi) == b'^';
                if negate {
                    pi += 1;
                }
                let mut matched = false;
                loop {
                    let left = pat.len() - pi;
                    if at(pi) == b'\\' && left >= 2 {
                        pi += 1;
                        matched |= same(pat[pi], s[si]);
                    } else if at(pi) == b']' {
                        break;
                    } else if left == 0 {
                        // Unterminated class: step back so the outer advance ends the pattern.
                        pi -= 1;
                        break;
                    } else if left >= 3 && pat[pi + 1] == b'-' {
                        // C compares (signed) chars, lowered with tolower.
                        let (mut lo, mut hi) = (c_char(pat[pi]), c_char(pat[pi + 2]));
                        if lo > hi {
                            std::mem::swap(&mut lo, &mut hi);
                        }
                        let c = c_char(s[si]);
                        pi += 2;
                        matched |= (fold(lo)..=fold(hi)).contains(&fold(c));
                    } else {
                        matched |= same(pat[pi], s[si]);
                    }
                    pi += 1;
                }
                if matched == negate {
                    return false;
                }
                si += 1;
            }
            first => {
                let literal = if first == b'\\' && pat.len() - pi >= 2 {
                    pi += 1;
                    pat[pi]
                } else {
                    first
                };
                if !same(literal, s[si]) {
                    return false;
                }
                si += 1;
            }
        }
        pi += 1;
        if si == s.len() {
            while at(pi) == b'*' {
                pi += 1;
            }
            break;
        }
    }
    pi >= pat.len() && si == s.len()
}

/// A byte as C's (signed) `char`.
fn c_char(b: u8) -> i32 {
    i32::from(i8::from_ne_bytes([b]))
}

/// C's `tolower` in the C locale.
fn c_lower(c: i32) -> i32 {
    if (i32::from(b'A')..=i32::from(b'Z')).contains(&c) {
        c + 32
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_matches_like_redis() {
        assert!(glob_match(b"*", b"anything", false));
        assert!(glob_match(b"h?llo", b"hello", false));
        assert!(glob_match(b"h*llo", b"heeeello", false));
        assert!(glob_match(b"h[ae]llo", b"hallo", false));
        assert!(!glob_match(b"h[^e]llo", b"hello", false));
        assert!(glob_match(b"h[a-b]llo", b"hbllo", false));
        assert!(glob_match(b"h\\*llo", b"h*llo", false));
        assert!(!glob_match(b"h\\*llo", b"hello", false));
        assert!(glob_match(b"max*", b"maxmemory", false));
        assert!(glob_match(b"MAX*", b"maxmemory", true));
        assert!(!glob_match(b"a*b", b"acbd", false));
        assert!(glob_match(b"a*b*c", b"aXbYbZc", false));
    }

    #[test]
    fn glob_hostile_pattern_is_fast() {
        let text = vec![b'a'; 10_000];
        assert!(!glob_match(b"*a*a*a*a*a*a*a*a*b", &text, false));
    }

    #[test]
    fn glob_nocase_matches_like_redis() {
        assert!(glob_match(b"*", b"get", true));
        assert!(glob_match(b"G?T", b"get", true));
        assert!(glob_match(b"[a-h]et", b"get", true));
        assert!(glob_match(b"[h-a]et", b"get", true));
        assert!(!glob_match(b"[^g]et", b"get", true));
        assert!(glob_match(b"g\\et", b"get", true));
        assert!(glob_match(b"client|no-*", b"client|no-evict", true));
        assert!(!glob_match(b"ge[", b"get", true));
        assert!(glob_match(b"ge[t", b"get", true));
        assert!(!glob_match(b"", b"get", true));
        assert!(!glob_match(b"*x", b"get", true));
        // Pathological patterns stay fast thanks to Redis's early give-up.
        let long = "a".repeat(60);
        assert!(!glob_match(
            b"*a*a*a*a*a*a*a*a*a*a*a*b",
            long.as_bytes(),
            true
        ));
    }
}
