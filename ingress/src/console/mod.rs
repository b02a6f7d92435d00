//! What the operators' console does, whichever face an operator uses (`/api` or
//! `/dashboard`): the job filter as clients send it, and the actions on jobs and portals.
//! Both route trees import this module; neither imports the other.
pub mod actions;
pub mod query;
