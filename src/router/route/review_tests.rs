//! Adversarial routing cases (review): filled in by the router review.
