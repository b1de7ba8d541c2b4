use std::fmt;
use std::str::FromStr;

/// Which topics a right covers: an exact topic (`room/42`), a prefix ending in `*`
/// (`room/*`: every topic that starts with `room/`), or `*` alone (every topic).
///
/// A prefix is a plain string prefix: end it with a separator (`user/ann/*`), or `user/ann*`
/// also covers `user/anna`. Topic names cannot contain `*`, so a `*` anywhere but at the end
/// matches nothing.
///
/// ```
/// use tower_sse::auth::Selector;
///
/// assert!(Selector::new("room/42").matches("room/42"));
/// assert!(!Selector::new("room/42").matches("room/420"));
/// assert!(Selector::new("room/*").matches("room/420"));
/// assert!(!Selector::new("room/*").matches("rooms"));
/// assert!(Selector::new("*").matches("anything"));
/// assert!(Selector::any(&["news", "user/ann/*"], "user/ann/inbox"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    /// The selector as written.
    text: Box<str>,
}

impl Selector {
    /// Reads a selector; every string is one.
    pub fn new(selector: impl Into<String>) -> Self {
        Selector {
            text: selector.into().into_boxed_str(),
        }
    }

    /// Whether `topic` is covered.
    pub fn matches(&self, topic: &str) -> bool {
        str_matches(&self.text, topic)
    }

    /// Whether any of `selectors` (selectors, or strings read as selectors) covers `topic`.
    pub fn any<S: AsRef<str>>(selectors: &[S], topic: &str) -> bool {
        selectors
            .iter()
            .any(|selector| str_matches(selector.as_ref(), topic))
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// [`Selector::matches`] on a selector as written.
fn str_matches(selector: &str, topic: &str) -> bool {
    match selector.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => selector == topic,
    }
}

impl AsRef<str> for Selector {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl From<&str> for Selector {
    fn from(selector: &str) -> Self {
        Selector::new(selector)
    }
}

impl From<String> for Selector {
    fn from(selector: String) -> Self {
        Selector::new(selector)
    }
}

impl FromStr for Selector {
    type Err = std::convert::Infallible;

    fn from_str(selector: &str) -> Result<Self, Self::Err> {
        Ok(Selector::new(selector))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
