//! The no-silent-gap guarantee as a property, over real sockets: random interleavings of
//! subscribe (with or without recover), unsubscribe, publish, bursts that overflow a small
//! outbound queue, and reconnects that recover from the last offset seen never give a
//! subscriber a gap or a duplicate unless it was told (`unsubscribed` `insufficient_state`,
//! or `recovered: false`); and at the end every live subscription has seen every offset.

mod common;

use common::{Client, Server};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

const CLIENTS: usize = 3;
const CHANNELS: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    Subscribe {
        client: usize,
        channel: usize,
        recover: bool,
    },
    Unsubscribe {
        client: usize,
        channel: usize,
    },
    Publish {
        client: usize,
        channel: usize,
    },
    /// Many large publications at once: the subscribers' queues (1 KiB) may overflow.
    Burst {
        client: usize,
        channel: usize,
        count: usize,
    },
    Reconnect {
        client: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let who = (0..CLIENTS, 0..CHANNELS);
    prop_oneof![
        3 => (who.clone(), any::<bool>()).prop_map(|((client, channel), recover)| Op::Subscribe { client, channel, recover }),
        1 => who.clone().prop_map(|(client, channel)| Op::Unsubscribe { client, channel }),
        4 => who.clone().prop_map(|(client, channel)| Op::Publish { client, channel }),
        1 => (who, 2..30usize).prop_map(|((client, channel), count)| Op::Burst { client, channel, count }),
        1 => (0..CLIENTS).prop_map(|client| Op::Reconnect { client }),
    ]
}

/// What one client knows of one channel.
#[derive(Default, Clone)]
struct Seen {
    /// The newest offset it has, when subscribed.
    live: Option<u64>,
    /// The newest offset it ever had, and in which epoch (for `recover`).
    last: Option<(u64, String)>,
    /// The offset of the `recover` of the subscribe in flight.
    recovering_from: Option<u64>,
}

struct Subscriber {
    client: Client,
    channels: Vec<Seen>,
    generation: usize,
}

struct Case<'a> {
    server: &'a Server,
    prefix: String,
    clients: Vec<Subscriber>,
    requests: u64,
}

impl Case<'_> {
    fn channel(&self, index: usize) -> String {
        format!("{}:{index}", self.prefix)
    }

    async fn connect(server: &Server, id: &str) -> Client {
        Client::chat(server, id).await.0
    }

    /// Applies one message read by `client`, checking the guarantee.
    fn observe(&mut self, client: usize, message: &Value) {
        let channel = message["channel"]
            .as_str()
            .and_then(|name| name.rsplit(':').next()?.parse::<usize>().ok());
        match message["type"].as_str().unwrap() {
            "publication" => {
                let offset = message["offset"].as_u64().unwrap();
                let state = &mut self.clients[client].channels[channel.unwrap()];
                let live = state.live.expect("a publication only while subscribed");
                assert_eq!(
                    offset,
                    live + 1,
                    "gap or duplicate without insufficient_state: {message}"
                );
                state.live = Some(offset);
                let epoch = state.last.as_ref().map(|(_, e)| e.clone()).unwrap();
                state.last = Some((offset, epoch));
            }
            "unsubscribed" => {
                let state = &mut self.clients[client].channels[channel.unwrap()];
                state.live = None;
            }
            "subscribed" => {
                let offset = message["offset"].as_u64().unwrap();
                let epoch = message["epoch"].as_str().unwrap().to_owned();
                let state = &mut self.clients[client].channels[channel.unwrap()];
                let asked = state.recovering_from.take();
                if message["recovered"] == true {
                    let Some(from) = asked else {
                        panic!("recovered only when asked: {message}")
                    };
                    let recovered: Vec<u64> = message["publications"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p["offset"].as_u64().unwrap())
                        .collect();
                    assert_eq!(
                        recovered,
                        (from + 1..=offset).collect::<Vec<u64>>(),
                        "{message}"
                    );
                }
                state.live = Some(offset);
                state.last = Some((offset, epoch));
            }
            "published" | "error" | "heartbeat" => {}
            other => panic!("unexpected {other}: {message}"),
        }
    }

    /// Sends `request` from `client` and reads (observing) up to its answer.
    async fn ask(&mut self, client: usize, mut request: Value) -> Value {
        self.requests += 1;
        let id = format!("r{}", self.requests);
        request["id"] = json!(id);
        self.clients[client].client.send_json(&request).await;
        loop {
            let message = self.clients[client].client.recv_reply().await;
            self.observe(client, &message);
            if message["id"] == id.as_str() {
                return message;
            }
        }
    }

    fn subscribe_request(&self, client: usize, channel: usize, recover: bool) -> Value {
        let mut request = json!({"type":"subscribe","channel":self.channel(channel)});
        if let (true, Some((offset, epoch))) =
            (recover, &self.clients[client].channels[channel].last)
        {
            request["recover"] = json!({"offset":offset,"epoch":epoch});
        }
        request
    }

    /// Subscribes `client` to `channel`, recovering from the last offset seen when `recover`.
    async fn subscribe(&mut self, client: usize, channel: usize, recover: bool) {
        let request = self.subscribe_request(client, channel, recover);
        let state = &mut self.clients[client].channels[channel];
        state.recovering_from = request["recover"]["offset"].as_u64();
        self.ask(client, request).await;
    }

    async fn apply(&mut self, op: Op) {
        match op {
            Op::Subscribe {
                client,
                channel,
                recover,
            } => self.subscribe(client, channel, recover).await,
            Op::Unsubscribe { client, channel } => {
                let request = json!({"type":"unsubscribe","channel":self.channel(channel)});
                self.ask(client, request).await;
                assert_eq!(self.clients[client].channels[channel].live, None);
            }
            Op::Publish { client, channel } => {
                let request = json!({"type":"publish","channel":self.channel(channel),"data":{"n":self.requests}});
                let answer = self.ask(client, request).await;
                assert_eq!(answer["type"], "published", "{answer}");
            }
            Op::Burst {
                client,
                channel,
                count,
            } => {
                let data = "b".repeat(600);
                let name = self.channel(channel);
                for _ in 1..count {
                    let request = json!({"type":"publish","channel":name,"data":data});
                    self.clients[client].client.send_json(&request).await;
                }
                let last = json!({"type":"publish","channel":name,"data":data});
                self.ask(client, last).await;
            }
            Op::Reconnect { client } => {
                let subscribed: Vec<usize> = (0..CHANNELS)
                    .filter(|&c| self.clients[client].channels[c].live.is_some())
                    .collect();
                let subscriber = &mut self.clients[client];
                subscriber.generation += 1;
                let id = format!("{}-c{client}g{}", self.prefix, subscriber.generation);
                subscriber.client = Self::connect(self.server, &id).await;
                for state in &mut subscriber.channels {
                    state.live = None;
                }
                for channel in subscribed {
                    self.subscribe(client, channel, true).await;
                }
            }
        }
    }

    /// Publishes a marker on every channel, then reads every subscriber up to it: a live
    /// subscription must reach it through every offset (checked by `observe`).
    async fn settle(&mut self) {
        for channel in 0..CHANNELS {
            let request = json!({"type":"publish","channel":self.channel(channel),"data":"marker"});
            let marker = self.ask(0, request).await["offset"].as_u64().unwrap();
            for client in 0..CLIENTS {
                while self.clients[client].channels[channel]
                    .live
                    .is_some_and(|live| live < marker)
                {
                    let message = self.clients[client].client.recv_reply().await;
                    self.observe(client, &message);
                }
            }
        }
    }
}

async fn run_case(server: &Server, case: usize, ops: Vec<Op>) {
    let prefix = format!("p{case}");
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        clients.push(Subscriber {
            client: Case::connect(server, &format!("{prefix}-c{client}g0")).await,
            channels: vec![Seen::default(); CHANNELS],
            generation: 0,
        });
    }
    let mut case = Case {
        server,
        prefix,
        clients,
        requests: 0,
    };
    for op in ops {
        case.apply(op).await;
    }
    case.settle().await;
}

#[test]
fn no_subscriber_sees_a_gap_or_a_duplicate_it_was_not_told_of() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let vars = [
        ("RATE_LIMIT_MSGS_PER_SEC", "0"),
        ("FRAME_RATE_LIMIT", "0"),
        ("OUTBOUND_QUEUE_BYTES", "1024"),
        ("HISTORY_SIZE", "16"),
    ];
    let server = runtime.block_on(Server::start(&vars));
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    let cases = std::cell::Cell::new(0);
    let overflows = "websocket_subscription_ends_total{reason=\"insufficient_state\"}";
    runner
        .run(&prop::collection::vec(op(), 1..40), |ops| {
            cases.set(cases.get() + 1);
            runtime.block_on(run_case(&server, cases.get(), ops));
            Ok(())
        })
        .unwrap();
    // The property was tested where it matters: some subscriptions did overflow.
    let ended = runtime.block_on(server.metric(overflows)).unwrap();
    assert!(ended > 0.0, "no case overflowed a queue");
}
