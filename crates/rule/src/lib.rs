//! The ruler (`strata rule`): Prometheus recording and alerting rules evaluated against
//! queriers, as Thanos' ruler does.
//!
//! The pieces, each in its own module:
//! - the Go `text/template` dialect that Prometheus expands alert labels and annotations with;
//! - the Alertmanager notifier;
//! - remote write of recorded series (Thanos' stateless ruler mode);
//! - the rule manager: groups, their evaluation loops, alert state.

pub mod notifier;
pub mod remote_write;
pub mod template;
