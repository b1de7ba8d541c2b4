//! The reference event-stream parser: `tower_sse::testing`'s, written line by line from the
//! WHATWG HTML standard, section 9.2 "Server-sent events" (see its docs for what it
//! implements), with the two helpers these tests feed it with.
//!
//! [`Parser`] wraps `tower_sse::testing::Parser` only to give the tests its `retry` in
//! milliseconds, the unit of the `retry:` field they compare it with.

#![allow(dead_code)]

use std::ops::{Deref, DerefMut};

#[allow(unused_imports)] // each test file uses some of them
pub use tower_sse::testing::{Item, ParsedEvent, parse};

/// `tower_sse::testing::Parser`, with [`retry`](Self::retry) in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Parser(tower_sse::testing::Parser);

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Parser::default()
    }

    /// The reconnection time in milliseconds from the last valid `retry:` field, if any.
    pub fn retry(&self) -> Option<u64> {
        self.0
            .retry()
            .map(|retry| u64::try_from(retry.as_millis()).unwrap_or(u64::MAX))
    }
}

impl Deref for Parser {
    type Target = tower_sse::testing::Parser;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Parser {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Parses a complete stream delivered in these chunks.
pub fn parse_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<ParsedEvent> {
    let mut parser = Parser::new();
    chunks
        .into_iter()
        .flat_map(|chunk| parser.feed(chunk))
        .collect()
}

/// Splits `bytes` at the given offsets (taken modulo the length, in any order, duplicates
/// allowed): a helper to feed one stream in arbitrary chunks.
pub fn split_at_offsets<'a>(bytes: &'a [u8], offsets: &[usize]) -> Vec<&'a [u8]> {
    if bytes.is_empty() {
        return vec![bytes];
    }
    let mut cuts: Vec<usize> = offsets.iter().map(|&o| o % bytes.len()).collect();
    cuts.push(0);
    cuts.push(bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}
