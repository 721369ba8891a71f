//! The building blocks of every labelled series: a counter vector's children created up front
//! for every value of a typed label, and the registration of a collector.

use std::marker::PhantomData;

use prometheus::{IntCounter, IntCounterVec, Registry};

use crate::label::Label;

/// The children of a counter vector, one per value of the label `L`, created up front so that
/// each series exists at 0, in the order of `L::ALL`: a value's child is at its index.
pub(super) struct Children<L> {
    counters: Box<[IntCounter]>,
    label: PhantomData<L>,
}

impl<L: Label> Children<L> {
    /// `label_values` without the value that tells the children apart, which comes last.
    pub(super) fn new(vec: &IntCounterVec, label_values: &[&str]) -> Children<L> {
        let child = |value: L| vec.with_label_values(&[label_values, &[value.name()]].concat());
        Children {
            counters: L::ALL.iter().map(|&value| child(value)).collect(),
            label: PhantomData,
        }
    }

    pub(super) fn get(&self, value: L) -> &IntCounter {
        &self.counters[value.index()]
    }

    /// The sum over every label value.
    pub(super) fn total(&self) -> u64 {
        self.counters.iter().map(IntCounter::get).sum()
    }
}

pub(super) fn register<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: T,
) -> T {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique and valid");
    collector
}

/// Whether the exposition `text` has `{prefix}"<value>"} 0` for every value of `L` (for the
/// tests that every series exists from start-up).
#[cfg(test)]
pub(super) fn every_value_at_zero<L: Label>(text: &str, prefix: &str) -> bool {
    L::ALL
        .iter()
        .all(|value| text.contains(&format!("{prefix}\"{}\"}} 0", value.name())))
}
