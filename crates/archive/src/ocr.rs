//! OCR of the pictures attached to messages (`[extract] ocr`): Tesseract, under the extraction
//! worker's limits, fed from a queue of its own. The indexer queues a message with pictures once
//! it has indexed it without them (plain indexing never waits for OCR); what OCR reads is kept in
//! the catalog (`ocr_text`, a cache of what the originals give) and the message is indexed again
//! with it.

use std::sync::Arc;
use std::time::Duration;

use coffer_catalog::Catalog;
use coffer_store::Store;

use crate::ArchiveError;
use crate::indexer::OcrText;
use crate::service::blocking;
use crate::service::location_of;

/// Messages read per turn (each may hold several pictures).
const BATCH: i64 = 8;

pub struct Ocr {
    pub(crate) catalog: Catalog,
    pub(crate) store: Arc<Store>,
    pub(crate) extractor: coffer_extract::Extractor,
}

impl Ocr {
    /// Reads the pictures of the next messages in the OCR queue; how many messages it read.
    pub async fn run_once(&self) -> Result<usize, ArchiveError> {
        let ids = self.catalog.ocr_queue_next(BATCH).await?;
        let rows = self.catalog.messages(&ids).await?;
        for id in &ids {
            let Some(row) = rows.iter().find(|r| r.id == *id) else {
                // Deleted since it was queued: nothing to read, nothing kept.
                self.catalog.ocr_done(*id, &[]).await?;
                continue;
            };
            let (store, extractor, at) = (self.store.clone(), self.extractor.clone(), location_of(row));
            let id = *id;
            let texts = blocking(move || -> Vec<OcrText> {
                let raw = match store.read(&at) {
                    Ok(raw) => raw,
                    Err(e) => {
                        tracing::warn!(message = id, error = %e, "OCR: the original could not be read");
                        return Vec::new();
                    }
                };
                let mut texts = Vec::new();
                for (part, (info, bytes)) in coffer_mail::view::document_attachments(&raw).into_iter().enumerate() {
                    match extractor.ocr(&bytes) {
                        None => {}
                        Some(Ok(text)) => texts.push((part as i64, info.name, text)),
                        Some(Err(why)) => {
                            tracing::info!(message = id, picture = %info.name, %why, "OCR: picture not read");
                            texts.push((part as i64, info.name, String::new()));
                        }
                    }
                }
                texts
            })
            .await?;
            // A message whose pictures gave nothing is marked read all the same, so that the
            // indexer does not queue it again.
            let texts = if texts.is_empty() { vec![(-1, String::new(), String::new())] } else { texts };
            self.catalog.ocr_done(id, &texts).await?;
        }
        Ok(ids.len())
    }

    /// Reads until the OCR queue is empty; how many messages it read.
    pub async fn run_until_idle(&self) -> Result<usize, ArchiveError> {
        crate::indexer::until_idle(|| self.run_once()).await
    }

    /// Keeps reading in the background, a few seconds after the queue was last found empty.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.run_until_idle().await {
                    tracing::error!(error = %e, "OCR failed; retrying shortly");
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
    }
}
