//! [`Classify`]: how a finished call counts for a circuit breaker.

use fusebox::breaker::Outcome;

/// Decides how a finished call counts for the breaker.
///
/// Implemented by [`DefaultClassifier`] (`Ok` succeeds, `Err` fails) and by
/// every `Fn(&Result<T, E>) -> Outcome`. Return [`Outcome::Ignored`] for
/// results that are not the dependency's fault (a 404, a validation error):
/// they change no state, and a half-open trial so classified frees its slot
/// without deciding.
///
/// # Examples
///
/// ```
/// use fusebox::breaker::Outcome;
/// use fusebox_std::policy::{Classify, DefaultClassifier};
///
/// let not_found_is_fine = |r: &Result<u16, u16>| match r {
///     Ok(_) => Outcome::Success,
///     Err(404) => Outcome::Ignored,
///     Err(_) => Outcome::Failure,
/// };
/// assert_eq!(not_found_is_fine.classify(&Err(404)), Outcome::Ignored);
/// assert_eq!(DefaultClassifier.classify(&Err::<(), u16>(404)), Outcome::Failure);
/// ```
pub trait Classify<T, E> {
    /// How `result` counts.
    fn classify(&self, result: &Result<T, E>) -> Outcome;
}

/// `Ok` is a success, `Err` a failure.
///
/// # Examples
///
/// ```
/// use fusebox::breaker::Outcome;
/// use fusebox_std::policy::{Classify, DefaultClassifier};
///
/// assert_eq!(DefaultClassifier.classify(&Ok::<u8, ()>(1)), Outcome::Success);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultClassifier;

impl<T, E> Classify<T, E> for DefaultClassifier {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }
}

impl<T, E, F: Fn(&Result<T, E>) -> Outcome> Classify<T, E> for F {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}
