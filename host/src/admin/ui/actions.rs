//! What an operator may do from the dashboard: remove an app, roll it back.
