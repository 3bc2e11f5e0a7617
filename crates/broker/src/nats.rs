//! The NATS JetStream broker.

use crate::*;

pub struct NatsBroker {}

impl NatsBroker {
    /// Connects to `url` with the default namespace `carrierhub`.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_namespaced(url, "carrierhub").await
    }

    /// Connects to `url`; streams and subjects are prefixed by `namespace`, so several
    /// installations (or tests) can share one server.
    pub async fn connect_namespaced(_url: &str, _namespace: &str) -> Result<Self> {
        todo!()
    }

    /// Deletes this namespace's streams and everything in them.
    pub async fn delete_namespace(&self) -> Result<()> {
        todo!()
    }
}

#[async_trait]
impl Broker for NatsBroker {
    fn describe(&self) -> String {
        todo!()
    }
    async fn ping(&self) -> Result<()> {
        todo!()
    }
    async fn publish(&self, _message: Outgoing) -> Result<Published> {
        todo!()
    }
    async fn consumer(&self, _config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        todo!()
    }
    async fn lag(&self, _group: &str) -> Result<Lag> {
        todo!()
    }
    async fn dead_letters(&self, _after: u64, _limit: usize) -> Result<Vec<DeadLetter>> {
        todo!()
    }
    async fn dead_letter(&self, _id: u64) -> Result<Option<DeadLetter>> {
        todo!()
    }
    async fn redrive(&self, _id: u64) -> Result<Option<Published>> {
        todo!()
    }
}
