//! Calendar and resource-booking domain code shared by `booking_info` and `booking_rename`.
pub mod booking;
