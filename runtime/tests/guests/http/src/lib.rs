//! Test fixture: imports an interface named like `wasi:http`'s outgoing
//! handler, which could reach the world; the host must refuse it at upload,
//! naming the import. (Declared inline, as version 0.3.0 so that it does not
//! merge with the wasi:http 0.2 that the standard library's adapter names;
//! the host refuses it by name before it looks at its functions.)
use logbook_guest::prelude::*;

mod net {
    wit_bindgen::generate!({
        inline: "
            package wasi:http@0.3.0;
            interface outgoing-handler {
                handle: func(url: string) -> string;
            }
            world fetcher {
                import outgoing-handler;
            }
        ",
        world: "fetcher",
    });
}

#[derive(Default, Serialize, Deserialize)]
struct Fetcher;

impl Agent for Fetcher {
    fn apply(&mut self, event: &Event, fx: &mut Effects) {
        if let Some(text) = event.input_text() {
            fx.output(net::wasi::http::outgoing_handler::handle(&text));
        }
    }
}

logbook_guest::export_agent!(Fetcher);
