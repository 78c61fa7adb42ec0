//! The bundled demo site, published as site `demo` by `ledge serve --demo`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use ledge_core::{Digest, SiteName};
use ledge_store::{BlobStore, MetaError, MetaStore, NewDeploy};

const FILES: [(&str, &[u8]); 4] = [
    ("/index.html", include_bytes!("../demo/index.html")),
    (
        "/about/index.html",
        include_bytes!("../demo/about/index.html"),
    ),
    ("/404.html", include_bytes!("../demo/404.html")),
    ("/style.css", include_bytes!("../demo/style.css")),
];

/// Publishes the demo site unless its published deploy already has these files.
pub async fn publish(
    meta: &Arc<dyn MetaStore>,
    blobs: &Arc<dyn BlobStore>,
    processor: &ledge_control::process::Processor,
) -> anyhow::Result<()> {
    let site = SiteName::parse("demo")?;
    let files: BTreeMap<String, Digest> = FILES
        .iter()
        .map(|(p, b)| ((*p).to_owned(), Digest::of(b)))
        .collect();
    match meta.get_site(&site).await {
        Ok(s) => {
            if let Some(id) = s.published {
                if meta.deploy_files(&id).await.ok().as_ref() == Some(&files) {
                    return Ok(());
                }
            }
        }
        Err(MetaError::NotFound(_)) => {
            let (_, ev) = meta.create_site(&site).await?;
            processor.feed.send([ev]);
        }
        Err(e) => return Err(e.into()),
    }
    let deploy = meta
        .create_deploy(
            &site,
            NewDeploy {
                files,
                prod: true,
                alias: None,
                message: Some("bundled demo site".into()),
            },
        )
        .await?;
    for (_, bytes) in FILES {
        let d = Digest::of(bytes);
        if deploy.missing.contains(&d) {
            let body = futures_util::stream::iter([Ok(Bytes::from_static(bytes))]);
            blobs.put_stream(&d, Box::pin(body)).await?;
            meta.blob_uploaded(&deploy.id, &d).await?;
        }
    }
    processor.run(deploy.id).await;
    let d = meta.get_deploy(&deploy.id).await?;
    if d.state != ledge_store::DeployState::Ready {
        return Err(anyhow::anyhow!("{}", d.error.unwrap_or_default()))
            .context("the demo deploy failed");
    }
    Ok(())
}
