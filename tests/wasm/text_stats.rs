//! A trio_pipe WASM worker in Rust, with no crates: the "text-stats" task, the same
//! contract and output as text_stats.c (the tests hold both to one expectation).
//!
//! Build: rustc --edition 2021 --target wasm32-wasip1 -O -C strip=symbols \
//!            -o text_stats_rs.wasm text_stats.rs

use std::io::{self, Read, Write};
use std::process::ExitCode;

/// A JSON reader over the input bytes: just enough to find `payload.text`.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

type Parsed<T> = Result<T, &'static str>;

impl<'a> Reader<'a> {
    fn skip_space(&mut self) {
        while matches!(self.bytes.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn hex4(&mut self) -> Parsed<u32> {
        let digits = self.bytes.get(self.at..self.at + 4).ok_or("truncated \\u escape")?;
        self.at += 4;
        let text = std::str::from_utf8(digits).map_err(|_| "bad \\u escape")?;
        u32::from_str_radix(text, 16).map_err(|_| "bad \\u escape")
    }

    fn string(&mut self) -> Parsed<String> {
        if !self.eat(b'"') {
            return Err("expected a string");
        }
        let mut out: Vec<u8> = Vec::new();
        loop {
            let byte = *self.bytes.get(self.at).ok_or("unterminated string")?;
            self.at += 1;
            match byte {
                b'"' => return String::from_utf8(out).map_err(|_| "string is not UTF-8"),
                0..=0x1f => return Err("control character in string"),
                b'\\' => {
                    let escape = *self.bytes.get(self.at).ok_or("unterminated string")?;
                    self.at += 1;
                    let simple = match escape {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(0x08),
                        b'f' => Some(0x0c),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        b'u' => None,
                        _ => return Err("bad escape"),
                    };
                    if let Some(byte) = simple {
                        out.push(byte);
                        continue;
                    }
                    let mut code = self.hex4()?;
                    if (0xD800..0xDC00).contains(&code) {
                        if self.bytes.get(self.at..self.at + 2) != Some(b"\\u") {
                            return Err("lone surrogate");
                        }
                        self.at += 2;
                        let low = self.hex4()?;
                        if !(0xDC00..0xE000).contains(&low) {
                            return Err("lone surrogate");
                        }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                    }
                    let ch = char::from_u32(code).ok_or("lone surrogate")?;
                    out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                }
                _ => out.push(byte),
            }
        }
    }

    fn skip_value(&mut self, depth: u32) -> Parsed<()> {
        if depth > 64 {
            return Err("nested too deeply");
        }
        self.skip_space();
        match self.bytes.get(self.at) {
            Some(b'"') => self.string().map(|_| ()),
            Some(&open @ (b'{' | b'[')) => {
                self.at += 1;
                let close = if open == b'{' { b'}' } else { b']' };
                if self.eat(close) {
                    return Ok(());
                }
                loop {
                    if open == b'{' {
                        self.string()?;
                        if !self.eat(b':') {
                            return Err("expected ':'");
                        }
                    }
                    self.skip_value(depth + 1)?;
                    if !self.eat(b',') {
                        return if self.eat(close) { Ok(()) } else { Err("expected ',' or a close") };
                    }
                }
            }
            Some(_) => {
                let start = self.at;
                while matches!(self.bytes.get(self.at), Some(b'+' | b'-' | b'.' | b'0'..=b'9' | b'a'..=b'z' | b'E')) {
                    self.at += 1;
                }
                if self.at > start { Ok(()) } else { Err("expected a value") }
            }
            None => Err("unexpected end of input"),
        }
    }

    /// With the reader on an object, move it to the value of member `key`.
    fn member(&mut self, key: &str) -> Parsed<()> {
        if !self.eat(b'{') {
            return Err("expected an object");
        }
        if self.eat(b'}') {
            return Err("member not found");
        }
        loop {
            let name = self.string()?;
            if !self.eat(b':') {
                return Err("expected ':'");
            }
            if name == key {
                return Ok(());
            }
            self.skip_value(1)?;
            if !self.eat(b',') {
                return Err("member not found");
            }
        }
    }
}

fn payload_text(input: &[u8]) -> Parsed<String> {
    let mut reader = Reader { bytes: input, at: 0 };
    reader.member("payload").map_err(|_| "the task has no payload object")?;
    reader.member("text").map_err(|_| "payload.text is missing")?;
    reader.string().map_err(|_| "payload.text must be a string")
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() -> ExitCode {
    let mut input = Vec::new();
    if io::stdin().read_to_end(&mut input).is_err() {
        eprintln!("text-stats: cannot read stdin");
        return ExitCode::from(2);
    }
    let text = match payload_text(&input) {
        Ok(text) => text,
        Err(why) => {
            eprintln!("text-stats: {why}");
            return ExitCode::from(2);
        }
    };
    let hash = text
        .bytes()
        .fold(2166136261u32, |hash, byte| (hash ^ byte as u32).wrapping_mul(16777619));
    let words = text
        .split(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c' | '\x0b'))
        .filter(|word| !word.is_empty())
        .count();
    let output = format!(
        "{{\"upper\":{},\"words\":{},\"fnv1a\":{}}}\n",
        json_string(&text.to_ascii_uppercase()),
        words,
        hash
    );
    if io::stdout().write_all(output.as_bytes()).is_err() {
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
