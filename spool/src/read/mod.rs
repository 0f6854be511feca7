//! Reading a capture back: a closed one with [`reader`], a live one with
//! [`follow`].

pub mod event;
pub mod follow;
pub mod reader;
