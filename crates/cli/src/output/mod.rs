//! What the CLI shows people: progress lines as drives go
//! ([`Lines`]), the live view on a terminal ([`Live`]), the step tree of
//! `show` ([`tree`]) and the words for times and waits ([`text`]).

mod lines;
mod live;
mod text;
pub(crate) mod tree;

pub(crate) use lines::Lines;
pub(crate) use live::Live;
pub(crate) use text::{clip, format_duration, format_time, short, waiting_text};
