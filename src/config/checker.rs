//! The [`Checker`]: where every configuration error and warning is collected, with its
//! position (line and column, computed from a byte span of the file) and the object it
//! belongs to, so that all of them can be reported at once (SPEC §2).

use std::ops::Range;

use toml::Spanned;

use super::ConfigError;
use crate::proxy::NextHop;

/// Collects errors with their positions.
pub(super) struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    pub(super) errors: Vec<ConfigError>,
    /// The span each error of `errors` points at, if any (turned into its key path once
    /// every error is known).
    pub(super) spans: Vec<Option<Range<usize>>>,
    pub(super) warnings: Vec<String>,
    /// Keys whose values had the wrong type (already reported, then taken out), with the
    /// span of the table they were in.
    pub(super) removed: Vec<(String, Range<usize>)>,
    /// Every distinct next hop named so far, in order: the policy's [`HopId`]s.
    ///
    /// [`HopId`]: crate::policy::HopId
    pub(super) hops: Vec<NextHop>,
}

impl<'a> Checker<'a> {
    /// A checker of `text`, the contents of `file`, with nothing found yet.
    pub(super) fn new(file: &'a str, text: &'a str) -> Self {
        Checker {
            file,
            text,
            errors: Vec::new(),
            spans: Vec::new(),
            warnings: Vec::new(),
            removed: Vec::new(),
            hops: Vec::new(),
        }
    }
}

impl Checker<'_> {
    fn position(&self, span: &Range<usize>) -> (usize, usize) {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    pub(super) fn error(
        &mut self,
        span: Option<&Range<usize>>,
        context: &str,
        message: impl Into<String>,
    ) {
        let position = span.map(|s| self.position(s));
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            position,
            context: context.to_owned(),
            message: message.into(),
            field: None,
        });
        self.spans.push(span.cloned());
    }

    pub(super) fn warn(&mut self, span: &Range<usize>, context: &str, message: &str) {
        let (line, col) = self.position(span);
        self.warnings
            .push(format!("{}:{line}:{col}: {context}: {message}", self.file));
    }

    /// A required key: its value, or an error at the enclosing object.
    pub(super) fn required<'v, T>(
        &mut self,
        value: &'v Option<T>,
        key: &str,
        at: &Range<usize>,
        ctx: &str,
    ) -> Option<&'v T> {
        let mistyped = self.removed.iter().any(|(k, s)| k == key && s == at);
        if value.is_none() && !mistyped {
            self.error(Some(at), ctx, format!("missing required key `{key}`"));
        }
        value.as_ref()
    }

    /// A positive integer setting with a default.
    pub(super) fn positive(
        &mut self,
        v: &Option<Spanned<i64>>,
        default: u32,
        key: &str,
        ctx: &str,
    ) -> u32 {
        match v {
            None => default,
            Some(s) => match u32::try_from(*s.get_ref()) {
                Ok(n) if n > 0 => n,
                _ => {
                    self.error(
                        Some(&s.span()),
                        ctx,
                        format!(
                            "`{key}` must be a positive whole number, not {}",
                            s.get_ref()
                        ),
                    );
                    default
                }
            },
        }
    }
}
