//! DeleteTopics: by name (v1-v5 `topic_names`, v6 `topics[].name`) or by id (v6).

use std::sync::Arc;

use josefine_meta::{Command, TopicId};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use tracing::info;
use uuid::Uuid;

use super::create_topics::meta_error_code;
use super::{code, str_bytes, topic_id_of, topic_name, uuid_of};
use crate::broker::Broker;
use crate::limits;

async fn delete_one(
    broker: &Broker,
    name: Option<String>,
    id: Option<TopicId>,
) -> DeletableTopicResult {
    let image = broker.metadata.image();
    let found = match (&name, id) {
        (Some(n), _) => image.topic_by_name(n),
        (None, Some(id)) => image.topics.get(&id),
        (None, None) => None,
    };
    let result = DeletableTopicResult::default()
        .with_name(name.as_deref().map(topic_name))
        .with_topic_id(id.map_or(Uuid::nil(), uuid_of));
    let Some(topic) = found else {
        let (error, message) = if name.is_some() {
            (
                code::UNKNOWN_TOPIC_OR_PARTITION,
                "This server does not host this topic-partition.",
            )
        } else {
            (
                code::UNKNOWN_TOPIC_ID,
                "This server does not host this topic ID.",
            )
        };
        return result
            .with_error_code(error)
            .with_error_message(Some(str_bytes(message)));
    };
    let (topic_id, topic_name_s) = (topic.topic_id, topic.name.clone());
    let result = result
        .with_name(Some(topic_name(&topic_name_s)))
        .with_topic_id(uuid_of(topic_id));
    match broker
        .metadata
        .propose(Command::DeleteTopic { topic_id })
        .await
    {
        Ok(_) => {
            info!(topic = %topic_name_s, "deleted topic");
            // Committed offsets of the topic go too (Kafka's onPartitionsDeleted, which the
            // metadata publisher waits on; every broker's coordinator does it when its image
            // drops the topic): answered once this broker's tombstones are appended.
            broker.groups().topic_deleted().await;
            result.with_error_code(code::NONE)
        }
        Err(e) => result
            .with_error_code(meta_error_code(&e))
            .with_error_message(Some(str_bytes(e.to_string()))),
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let mut responses = Vec::new();
    if version >= 6 {
        for t in request.topics.iter().take(limits::TOPICS_PER_REQUEST_MAX) {
            let name = t.name.as_ref().map(|n| n.0.to_string());
            let id = if t.topic_id.is_nil() {
                None
            } else {
                Some(topic_id_of(t.topic_id))
            };
            responses.push(delete_one(broker, name, id).await);
        }
    } else {
        for n in request
            .topic_names
            .iter()
            .take(limits::TOPICS_PER_REQUEST_MAX)
        {
            responses.push(delete_one(broker, Some(n.0.to_string()), None).await);
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
