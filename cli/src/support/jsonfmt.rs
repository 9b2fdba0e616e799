//! Re-serialisations of a JSON body that keep key order and string escapes exactly, so `verify`
//! can tell whether a signature matches the body as some tool would have re-encoded it.
//!
//! serde_json's `Value` sorts object keys (without its `preserve_order` feature) and normalises
//! escapes, which would hide exactly the change we are looking for; these functions only move
//! the whitespace between tokens.

/// Tokens of a JSON text: structural characters and literals/strings, whitespace dropped.
/// Returns `None` if a string is unterminated (not JSON, nothing to re-serialise).
fn tokens(input: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'{' | b'}' | b'[' | b']' | b',' | b':' => {
                out.push(&input[i..=i]);
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                loop {
                    match input.get(i)? {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                out.push(input.get(start..i)?);
            }
            _ => {
                let start = i;
                while i < input.len()
                    && !matches!(
                        input[i],
                        b' ' | b'\t'
                            | b'\n'
                            | b'\r'
                            | b'{'
                            | b'}'
                            | b'['
                            | b']'
                            | b','
                            | b':'
                            | b'"'
                    )
                {
                    i += 1;
                }
                out.push(&input[start..i]);
            }
        }
    }
    Some(out)
}

/// `{"a":1,"b":[1,2]}`: what `JSON.stringify(x)` and most serialisers produce.
pub fn compact(input: &[u8]) -> Option<Vec<u8>> {
    Some(tokens(input)?.concat())
}

/// `{"a": 1, "b": [1, 2]}`: Python's `json.dumps` default separators.
pub fn spaced(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() + 16);
    for t in tokens(input)? {
        out.extend_from_slice(t);
        if t == b"," || t == b":" {
            out.push(b' ');
        }
    }
    Some(out)
}

/// Indented with `indent` spaces, `": "` after keys, empty containers kept as `{}` / `[]`:
/// `JSON.stringify(x, null, 2)`, serde_json's pretty printer, Python's `indent=`.
pub fn pretty(input: &[u8], indent: usize) -> Option<Vec<u8>> {
    let toks = tokens(input)?;
    let mut out = Vec::with_capacity(input.len() * 2);
    let mut depth = 0usize;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', depth * indent));
    };
    for (i, t) in toks.iter().enumerate() {
        match *t {
            b"{" | b"[" => {
                out.extend_from_slice(t);
                let closes_next = toks.get(i + 1).is_some_and(|n| *n == b"}" || *n == b"]");
                depth += 1;
                if !closes_next {
                    newline(&mut out, depth);
                }
            }
            b"}" | b"]" => {
                depth = depth.saturating_sub(1);
                let opened_prev = i > 0 && (toks[i - 1] == b"{" || toks[i - 1] == b"[");
                if !opened_prev {
                    newline(&mut out, depth);
                }
                out.extend_from_slice(t);
            }
            b"," => {
                out.push(b',');
                newline(&mut out, depth);
            }
            b":" => out.extend_from_slice(b": "),
            other => out.extend_from_slice(other),
        }
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PRETTY: &str = "{\n  \"z\": 1,\n  \"a\": [\n    true,\n    \"x, y: \\\"q\\\"\"\n  ],\n  \"e\": {},\n  \"l\": []\n}";

    #[test]
    fn compact_keeps_order_and_strings() {
        let c = compact(PRETTY.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(c).unwrap(),
            r#"{"z":1,"a":[true,"x, y: \"q\""],"e":{},"l":[]}"#
        );
    }

    #[test]
    fn pretty_matches_serde_json_for_ordered_input() {
        let c = compact(PRETTY.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(pretty(&c, 2).unwrap()).unwrap(), PRETTY);
        // serde_json sorts keys, so compare on sorted input.
        let sorted = br#"{"a":[1,{"b":null}],"c":"d"}"#;
        let v: serde_json::Value = serde_json::from_slice(sorted).unwrap();
        assert_eq!(
            pretty(sorted, 2).unwrap(),
            serde_json::to_vec_pretty(&v).unwrap()
        );
    }

    #[test]
    fn spaced_is_python_default() {
        assert_eq!(
            spaced(br#"{"a":1,"b":[1,2]}"#).unwrap(),
            br#"{"a": 1, "b": [1, 2]}"#.to_vec()
        );
    }

    #[test]
    fn unterminated_string_is_not_json() {
        assert_eq!(compact(br#"{"a":"b"#), None);
    }
}
