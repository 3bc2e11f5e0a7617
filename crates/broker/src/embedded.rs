//! The embedded broker: durable messages in the store's own database.

use crate::*;

pub struct EmbeddedBroker {}

impl EmbeddedBroker {
    /// Opens the broker in the store database `store_url` names (a SQLite path or a
    /// PostgreSQL URL); the store's migrations create its tables.
    pub async fn open(_store_url: &str) -> Result<Self> {
        todo!()
    }
}

#[async_trait]
impl Broker for EmbeddedBroker {
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
