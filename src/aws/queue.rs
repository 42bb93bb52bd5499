//! The event queue's port: [`QueueApi`], the three SQS calls `sync --watch --queue` makes
//! (long-poll receive, delete, extend a message's invisibility), over the official SQS
//! client ([`SdkQueue`]).
//!
//! The queue is not one of the workflow's services: its calls are not paced by the
//! account's Connect and Identity Center quotas, and every one of them may be re-sent
//! (a receive that was lost leaves its messages invisible until their timeout, then they
//! come back; deleting a deleted message's receipt succeeds), so the client keeps the SDK's
//! standard retries.

use std::time::Duration;

use super::error::{from_sdk, no_reason};
use super::Result;

/// A message received from the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The message id (a duplicate delivery has the same id).
    pub id: String,
    /// This delivery's receipt handle (what deletes or extends it).
    pub receipt: String,
    /// The body, as sent.
    pub body: String,
}

/// The calls made on the event queue.
#[async_trait::async_trait]
pub trait QueueApi: Send + Sync {
    /// Long-polls for up to `max` (at most 10) messages, waiting up to `wait` (at most 20 s)
    /// for the first; each received message stays invisible to others for `visibility` (0:
    /// not at all, a probe).
    async fn receive(&self, max: i32, wait: Duration, visibility: Duration)
        -> Result<Vec<Message>>;
    /// Deletes delivered messages by receipt (in batches of 10); the ids that failed.
    async fn delete(&self, messages: &[Message]) -> Result<Vec<String>>;
    /// Keeps delivered messages invisible for `visibility` more (from now).
    async fn extend(&self, messages: &[Message], visibility: Duration) -> Result<()>;
}

/// [`QueueApi`] over `aws_sdk_sqs::Client`, for one queue.
#[derive(Clone, Debug)]
pub struct SdkQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SdkQueue {
    /// The client for the queue at `url`, from the shared configuration (its profile and
    /// endpoint: `AWS_ENDPOINT_URL_SQS`); its region is the one the URL names, if any.
    pub fn new(sdk: &aws_config::SdkConfig, url: &str) -> SdkQueue {
        let mut b = aws_sdk_sqs::config::Builder::from(sdk);
        if let Some(region) = region_of(url) {
            b = b.region(aws_config::Region::new(region));
        }
        SdkQueue {
            client: aws_sdk_sqs::Client::from_conf(b.build()),
            url: url.to_string(),
        }
    }
}

/// The region of a queue URL `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`.
fn region_of(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let mut parts = host.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("sqs"), Some(region), Some("amazonaws")) => Some(region.to_string()),
        _ => None,
    }
}

/// The ARN of the queue at `url` (`arn:aws:sqs:REGION:ACCOUNT:NAME`), if the URL is an AWS
/// queue URL; for IAM policies.
pub fn queue_arn(url: &str) -> Option<String> {
    let region = region_of(url)?;
    let mut path = url.split("://").nth(1)?.split('/').skip(1);
    let (account, name) = (path.next()?, path.next()?);
    (!account.is_empty() && !name.is_empty())
        .then(|| format!("arn:aws:sqs:{region}:{account}:{name}"))
}

#[async_trait::async_trait]
impl QueueApi for SdkQueue {
    async fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .visibility_timeout(visibility.as_secs().min(43_200) as i32)
            .send()
            .await
            .map_err(|e| from_sdk(e, no_reason))?;
        Ok((out.messages.unwrap_or_default().into_iter())
            .filter_map(|m| {
                Some(Message {
                    id: m.message_id?,
                    receipt: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn delete(&self, messages: &[Message]) -> Result<Vec<String>> {
        use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry as Entry;
        let mut failed = Vec::new();
        for chunk in messages.chunks(10) {
            let entries = (chunk.iter().enumerate())
                .map(|(i, m)| {
                    Entry::builder()
                        .id(i.to_string())
                        .receipt_handle(&m.receipt)
                        .build()
                        .map_err(|e| {
                            super::AwsError::unsupported("DeleteMessageBatch", &e.to_string())
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| from_sdk(e, no_reason))?;
            for f in out.failed {
                if let Some(m) = f.id.parse::<usize>().ok().and_then(|i| chunk.get(i)) {
                    failed.push(m.id.clone());
                }
            }
        }
        Ok(failed)
    }

    async fn extend(&self, messages: &[Message], visibility: Duration) -> Result<()> {
        use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry as Entry;
        for chunk in messages.chunks(10) {
            let entries = (chunk.iter().enumerate())
                .map(|(i, m)| {
                    Entry::builder()
                        .id(i.to_string())
                        .receipt_handle(&m.receipt)
                        .visibility_timeout(visibility.as_secs().clamp(1, 43_200) as i32)
                        .build()
                        .map_err(|e| {
                            super::AwsError::unsupported(
                                "ChangeMessageVisibilityBatch",
                                &e.to_string(),
                            )
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| from_sdk(e, no_reason))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_url_gives_its_region_and_arn() {
        let url = "https://sqs.eu-west-1.amazonaws.com/123456789012/connect-sync";
        assert_eq!(region_of(url).as_deref(), Some("eu-west-1"));
        assert_eq!(
            queue_arn(url).as_deref(),
            Some("arn:aws:sqs:eu-west-1:123456789012:connect-sync")
        );
        // A local endpoint (moto, LocalStack) names no region: the chain's is used.
        assert_eq!(region_of("http://127.0.0.1:5000/123456789012/q"), None);
        assert_eq!(queue_arn("http://127.0.0.1:5000/123456789012/q"), None);
    }
}
