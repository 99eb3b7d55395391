//! An assistant: each input goes to the model aliased `default`; the tools the
//! model calls run (with the host's approval policy), their results go back to
//! the model, and its final answer becomes an output. All of it is the SDK's
//! [`ChatAgent`](logbook_guest::ChatAgent); a session's config JSON can change
//! its system prompt, model alias, tools, step limit and context budget.

logbook_guest::export_agent!(logbook_guest::ChatAgent);
