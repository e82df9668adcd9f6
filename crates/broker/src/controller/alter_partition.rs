//! Serving AlterPartition (Kafka API 56, v3) on the active controller: partition leaders
//! asking to shrink or expand their ISRs.
//!
//! Owns: turning the request into meta's per-partition decisions
//! (`josefine_meta::controller::alter_partition`), proposing the resulting ISR changes (as
//! batches of at most `ALTER_PARTITION_CHANGES_PER_BLOCK_MAX`) under the controller lock, and
//! answering each partition with its state as this node's image holds it once the change
//! applied (leader, leader epoch, partition epoch, ISR), or with Kafka's error code.
//! Must never: answer success before the change applied, decide anything itself (the meta
//! rules decide; `Image::apply` re-checks the partition epoch and the joining members), or be
//! served on the client listener (the control channel only, never in ApiVersions).

use std::sync::Arc;

use josefine_meta::controller::alter_partition::{
    check_requester, decide_isr_change, IsrChangeRequest,
};
use josefine_meta::{Command, TopicId};
use kafka_protocol::messages::alter_partition_response::{PartitionData, TopicData};
use kafka_protocol::messages::{AlterPartitionRequest, AlterPartitionResponse, BrokerId};
use tracing::info;

use super::{meta_code, propose, ControllerRuntime, NOT_CONTROLLER};
use crate::broker::Broker;
use crate::handlers::code;
use crate::limits::ALTER_PARTITION_CHANGES_PER_BLOCK_MAX;

/// One partition of the request: what it asked and, once decided, its outcome.
struct Item {
    topic: usize,
    ask: IsrChangeRequest,
    /// Kafka error code, or NONE (answered with the partition's state from the image).
    error: i16,
    /// A change was proposed and applied for it.
    changed: bool,
}

impl ControllerRuntime {
    /// Serves one AlterPartition on this node, if it is the active controller.
    pub(super) async fn alter_partition(
        &self,
        broker: &Arc<Broker>,
        r: AlterPartitionRequest,
    ) -> AlterPartitionResponse {
        let guard = self.active.lock().await;
        if guard.is_none() {
            return AlterPartitionResponse::default().with_error_code(NOT_CONTROLLER);
        }
        let broker_id = r.broker_id.0;
        let image = broker.metadata.image();
        if let Err(e) = check_requester(&image, broker_id, r.broker_epoch) {
            return AlterPartitionResponse::default().with_error_code(meta_code(&e));
        }
        let mut items: Vec<Item> = Vec::new();
        for (topic, t) in r.topics.iter().enumerate() {
            for p in &t.partitions {
                items.push(Item {
                    topic,
                    ask: IsrChangeRequest {
                        topic_id: TopicId(*t.topic_id.as_bytes()),
                        partition: p.partition_index,
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch,
                        new_isr: p
                            .new_isr_with_epochs
                            .iter()
                            .map(|b| (b.broker_id.0, b.broker_epoch))
                            .collect(),
                    },
                    error: code::NONE,
                    changed: false,
                });
            }
        }
        // Decide every partition on one image, then propose the changes in batches; a batch
        // that fails (a change got in between) is decided and proposed again one by one.
        let mut changes: Vec<(usize, Command)> = Vec::new();
        for (i, item) in items.iter_mut().enumerate() {
            match decide_isr_change(&image, broker_id, &item.ask) {
                Ok(Some(cmd)) => changes.push((i, cmd)),
                Ok(None) => {}
                Err(e) => item.error = e.kafka_error_code(),
            }
        }
        for chunk in changes.chunks(ALTER_PARTITION_CHANGES_PER_BLOCK_MAX) {
            let cmd = match chunk {
                [(_, one)] => one.clone(),
                many => Command::Batch(many.iter().map(|(_, c)| c.clone()).collect()),
            };
            if propose(broker, cmd).await.is_ok() {
                for (i, _) in chunk {
                    items[*i].changed = true;
                }
                continue;
            }
            for (i, _) in chunk {
                let item = &mut items[*i];
                let image = broker.metadata.image();
                item.error = match decide_isr_change(&image, broker_id, &item.ask) {
                    Ok(Some(cmd)) => match propose(broker, cmd).await {
                        Ok(_) => {
                            item.changed = true;
                            code::NONE
                        }
                        Err(e) => e,
                    },
                    Ok(None) => code::NONE,
                    Err(e) => e.kafka_error_code(),
                };
            }
        }
        drop(guard);
        let image = broker.metadata.image();
        let mut topics: Vec<TopicData> = r
            .topics
            .iter()
            .map(|t| TopicData::default().with_topic_id(t.topic_id))
            .collect();
        for item in items {
            let mut answer = PartitionData::default()
                .with_partition_index(item.ask.partition)
                .with_error_code(item.error);
            match image.partition(item.ask.topic_id, item.ask.partition) {
                Some(p) if item.error == code::NONE => {
                    answer = answer
                        .with_leader_id(BrokerId(p.leader))
                        .with_leader_epoch(p.leader_epoch)
                        .with_partition_epoch(p.partition_epoch)
                        .with_isr(p.isr.iter().map(|r| BrokerId(*r)).collect());
                    if item.changed {
                        info!(
                            broker = broker_id,
                            topic_id = %item.ask.topic_id,
                            partition = item.ask.partition,
                            isr = ?p.isr,
                            partition_epoch = p.partition_epoch,
                            "ISR altered by the partition leader"
                        );
                    }
                }
                Some(_) => {}
                // Deleted since the decision: the partition is gone.
                None if item.error == code::NONE => {
                    answer = answer.with_error_code(code::UNKNOWN_TOPIC_ID);
                }
                None => {}
            }
            topics[item.topic].partitions.push(answer);
        }
        AlterPartitionResponse::default().with_topics(topics)
    }
}
