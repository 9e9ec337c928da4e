//! The subset of RFC 8941 structured-field dictionaries these headers use: members that are
//! inner lists of bare items with parameters, byte sequences, or bare items.
//!
//! Owns the parser only: it returns what the header says and knows nothing of signatures,
//! digests or which members a caller expects.

use base64::Engine as _;

use super::ParameterValue;

pub type Parameters = Vec<(String, ParameterValue)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    InnerList(Vec<(ParameterValue, Parameters)>, Parameters),
    Bytes(Vec<u8>),
    Bare(ParameterValue),
}

struct Parser<'a> {
    input: &'a [u8],
    position: usize,
}

pub fn parse_dictionary(input: &str) -> Result<Vec<(String, Member)>, String> {
    let mut parser = Parser {
        input: input.as_bytes(),
        position: 0,
    };
    parser.skip_spaces();
    let mut members: Vec<(String, Member)> = Vec::new();
    if parser.at_end() {
        return Err("empty dictionary".into());
    }
    loop {
        let key = parser.key()?;
        let member = if parser.eat(b'=') {
            parser.member()?
        } else {
            Member::Bare(ParameterValue::Boolean(true))
        };
        // RFC 8941: a later duplicate key overwrites the earlier one.
        members.retain(|(existing, _)| *existing != key);
        members.push((key, member));
        parser.skip_optional_whitespace();
        if parser.at_end() {
            return Ok(members);
        }
        if !parser.eat(b',') {
            return Err(format!("expected `,` at byte {}", parser.position));
        }
        parser.skip_optional_whitespace();
        if parser.at_end() {
            return Err("trailing `,`".into());
        }
    }
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.position >= self.input.len()
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.position).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.position += 1;
        }
    }

    fn skip_optional_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ') | Some(b'\t')) {
            self.position += 1;
        }
    }

    fn key(&mut self) -> Result<String, String> {
        let start = self.position;
        match self.peek() {
            Some(byte) if byte.is_ascii_lowercase() || byte == b'*' => self.position += 1,
            _ => return Err(format!("expected a key at byte {start}")),
        }
        while let Some(byte) = self.peek() {
            if byte.is_ascii_lowercase()
                || byte.is_ascii_digit()
                || matches!(byte, b'_' | b'-' | b'.' | b'*')
            {
                self.position += 1;
            } else {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&self.input[start..self.position]).into_owned())
    }

    fn member(&mut self) -> Result<Member, String> {
        if self.eat(b'(') {
            let mut items = Vec::new();
            loop {
                self.skip_spaces();
                if self.eat(b')') {
                    break;
                }
                let item = self.bare_item()?;
                let parameters = self.parameters()?;
                items.push((item, parameters));
                match self.peek() {
                    Some(b' ') | Some(b')') => {}
                    _ => {
                        return Err(format!(
                            "expected ` ` or `)` in inner list at byte {}",
                            self.position
                        ))
                    }
                }
            }
            let parameters = self.parameters()?;
            return Ok(Member::InnerList(items, parameters));
        }
        if self.eat(b':') {
            let start = self.position;
            while let Some(byte) = self.peek() {
                if byte == b':' {
                    break;
                }
                self.position += 1;
            }
            let encoded = &self.input[start..self.position];
            if !self.eat(b':') {
                return Err("unterminated byte sequence".into());
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|error| format!("byte sequence is not base64: {error}"))?;
            // Parameters on a byte sequence carry nothing this profile uses.
            self.parameters()?;
            return Ok(Member::Bytes(bytes));
        }
        let item = self.bare_item()?;
        self.parameters()?;
        Ok(Member::Bare(item))
    }

    fn parameters(&mut self) -> Result<Vec<(String, ParameterValue)>, String> {
        let mut parameters: Vec<(String, ParameterValue)> = Vec::new();
        while self.eat(b';') {
            self.skip_spaces();
            let key = self.key()?;
            let value = if self.eat(b'=') {
                self.bare_item()?
            } else {
                ParameterValue::Boolean(true)
            };
            parameters.retain(|(existing, _)| *existing != key);
            parameters.push((key, value));
        }
        Ok(parameters)
    }

    fn bare_item(&mut self) -> Result<ParameterValue, String> {
        match self.peek() {
            Some(b'"') => self.string().map(ParameterValue::String),
            Some(b'?') => {
                self.position += 1;
                match self.peek() {
                    Some(b'0') => {
                        self.position += 1;
                        Ok(ParameterValue::Boolean(false))
                    }
                    Some(b'1') => {
                        self.position += 1;
                        Ok(ParameterValue::Boolean(true))
                    }
                    _ => Err("malformed boolean".into()),
                }
            }
            Some(byte) if byte == b'-' || byte.is_ascii_digit() => self.integer(),
            Some(byte) if byte.is_ascii_alphabetic() || byte == b'*' => {
                let start = self.position;
                self.position += 1;
                while let Some(byte) = self.peek() {
                    if byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&byte) {
                        self.position += 1;
                    } else {
                        break;
                    }
                }
                Ok(ParameterValue::Token(
                    String::from_utf8_lossy(&self.input[start..self.position]).into_owned(),
                ))
            }
            _ => Err(format!("expected an item at byte {}", self.position)),
        }
    }

    fn integer(&mut self) -> Result<ParameterValue, String> {
        let start = self.position;
        self.eat(b'-');
        let digits_start = self.position;
        while matches!(self.peek(), Some(byte) if byte.is_ascii_digit()) {
            self.position += 1;
        }
        let n_digits = self.position - digits_start;
        if n_digits == 0 || n_digits > 15 {
            return Err(format!("malformed integer at byte {start}"));
        }
        if self.peek() == Some(b'.') {
            return Err("decimals are not supported here".into());
        }
        let text = std::str::from_utf8(&self.input[start..self.position])
            .map_err(|_| "malformed integer".to_string())?;
        text.parse()
            .map(ParameterValue::Integer)
            .map_err(|_| format!("malformed integer `{text}`"))
    }

    fn string(&mut self) -> Result<String, String> {
        self.position += 1;
        let mut value = String::new();
        loop {
            match self.peek() {
                None => return Err("unterminated string".into()),
                Some(b'"') => {
                    self.position += 1;
                    return Ok(value);
                }
                Some(b'\\') => {
                    self.position += 1;
                    match self.peek() {
                        Some(escaped @ (b'"' | b'\\')) => {
                            value.push(escaped as char);
                            self.position += 1;
                        }
                        _ => return Err("bad escape in string".into()),
                    }
                }
                Some(byte) if (0x20..=0x7e).contains(&byte) => {
                    value.push(byte as char);
                    self.position += 1;
                }
                Some(_) => return Err("non-printable character in string".into()),
            }
        }
    }
}
