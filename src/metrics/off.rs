//! Without the `metrics` feature: the recording calls of `metrics/record.rs`, doing nothing,
//! on types of no size, so that every call site compiles to nothing.

use crate::backend::{Error, Opened, Start};
use crate::registry::{Departure, Refused};

#[derive(Debug)]
pub(crate) struct StreamMetrics;

impl StreamMetrics {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        StreamMetrics
    }

    #[inline(always)]
    pub(crate) fn opened(&self) {}

    #[inline(always)]
    pub(crate) fn sent(&self, _events: u64, _bytes: u64) {}

    #[inline(always)]
    pub(crate) fn adopt_end(&self, _extensions: &http::Extensions) {}

    #[inline(always)]
    pub(crate) fn departed(&self, _departure: Departure) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Slow,
    Auth,
    ReplayLimit,
    Backend,
    Unavailable,
}

#[derive(Debug, Clone)]
pub(crate) struct EndCell;

impl EndCell {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        EndCell
    }

    #[inline(always)]
    pub(crate) fn with(_end: End) -> Self {
        EndCell
    }

    #[inline(always)]
    pub(crate) fn set(&self, _end: End) {}

    #[inline(always)]
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn attach(&self, _extensions: &mut http::Extensions) {}
}

#[derive(Debug)]
pub(crate) struct TopicMetrics;

impl TopicMetrics {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        TopicMetrics
    }

    #[inline(always)]
    pub(crate) fn added(&self, _bytes: usize) {}

    #[inline(always)]
    pub(crate) fn removed(&self, _bytes: usize) {}

    #[inline(always)]
    pub(crate) fn release(&self, _events: usize, _bytes: usize) {}
}

#[inline(always)]
pub(crate) fn refused(_refused: Refused) {}

#[inline(always)]
pub(crate) fn refused_origin() {}

#[inline(always)]
pub(crate) fn denied() {}

#[inline(always)]
pub(crate) fn published() {}

#[inline(always)]
pub(crate) fn backend_error(_operation: &'static str, _err: &Error) {}

#[inline(always)]
pub(crate) fn replayed(_start: &Start, _opened: &Opened) {}

#[inline(always)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn backend_lag(_added_ms: u64) {}
