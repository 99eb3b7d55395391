//! `fs.read` and `fs.write`: files in the session's own workspace directory.
//!
//! Invariants: a path is accepted only if it is relative, has no `..`, and
//! stays inside the workspace after symlinks are resolved; anything else is
//! refused before the file system is touched. A write replaces the whole
//! file, so the workspace is a function of the log's successful writes: the
//! session layer rebuilds it from them before the first `fs.*` call of an
//! actor (session::workspace).

use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;

use serde::Deserialize;

use super::tool::{Tool, ToolAnswer, ToolContext, ToolError};
use crate::config::Policy;
use crate::journal::ToolSpec;

/// Reads a text file from the workspace (policy: allow).
pub struct FsRead {
    /// Largest file it returns.
    pub max_bytes: u64,
}

/// Writes a text file in the workspace (policy: ask).
pub struct FsWrite;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    path: String,
    content: String,
}

fn args<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ToolError> {
    serde_json::from_value(value).map_err(|e| ToolError(format!("invalid arguments: {e}")))
}

/// Resolve `path` inside `workspace`, refusing anything that would leave it.
fn confine(workspace: &Path, path: &str) -> Result<PathBuf, ToolError> {
    let relative = Path::new(path);
    let clean = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if path.is_empty() || !clean {
        return Err(ToolError(format!(
            "path {path:?} is outside the workspace: use a relative path without '..'"
        )));
    }
    let full = workspace.join(relative);
    // A symlink inside the workspace could still point out of it.
    let root = workspace
        .canonicalize()
        .map_err(|e| ToolError(format!("workspace unavailable: {e}")))?;
    let mut probe = full.clone();
    while !probe.exists() {
        match probe.parent() {
            Some(parent) => probe = parent.to_path_buf(),
            None => break,
        }
    }
    let resolved = probe
        .canonicalize()
        .map_err(|e| ToolError(format!("cannot resolve {path:?}: {e}")))?;
    if !resolved.starts_with(&root) {
        return Err(ToolError(format!("path {path:?} is outside the workspace")));
    }
    Ok(full)
}

fn object_schema(props: serde_json::Value, required: &[&str]) -> serde_json::Value {
    serde_json::json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

impl Tool for FsRead {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "fs.read".into(),
            description: "Read a text file from the session's workspace.".into(),
            parameters: object_schema(
                serde_json::json!({"path": {"type": "string", "description": "relative path"}}),
                &["path"],
            ),
        }
    }

    fn default_policy(&self) -> Policy {
        Policy::Allow
    }

    fn idempotent(&self) -> bool {
        true
    }

    fn uses_workspace(&self) -> bool {
        true
    }

    fn call(
        &self,
        cx: ToolContext,
        arguments: serde_json::Value,
    ) -> Pin<Box<dyn Future<Output = Result<ToolAnswer, ToolError>> + Send + '_>> {
        Box::pin(async move {
            let ReadArgs { path } = args(arguments)?;
            std::fs::create_dir_all(&cx.workspace)
                .map_err(|e| ToolError(format!("workspace unavailable: {e}")))?;
            let full = confine(&cx.workspace, &path)?;
            let meta = tokio::fs::metadata(&full)
                .await
                .map_err(|e| ToolError(format!("cannot read {path:?}: {e}")))?;
            if meta.len() > self.max_bytes {
                return Err(ToolError(format!(
                    "{path:?} is {} bytes; the limit is {}",
                    meta.len(),
                    self.max_bytes
                )));
            }
            tokio::fs::read_to_string(&full)
                .await
                .map(ToolAnswer::from)
                .map_err(|e| ToolError(format!("cannot read {path:?}: {e}")))
        })
    }
}

impl Tool for FsWrite {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: FsWrite::NAME.into(),
            description: "Write a text file in the session's workspace.".into(),
            parameters: object_schema(
                serde_json::json!({
                    "path": {"type": "string", "description": "relative path"},
                    "content": {"type": "string"}
                }),
                &["path", "content"],
            ),
        }
    }

    fn default_policy(&self) -> Policy {
        Policy::Ask
    }

    fn call(
        &self,
        cx: ToolContext,
        arguments: serde_json::Value,
    ) -> Pin<Box<dyn Future<Output = Result<ToolAnswer, ToolError>> + Send + '_>> {
        Box::pin(async move {
            FsWrite::write_in(cx.workspace, arguments)
                .await
                .map(ToolAnswer::from)
        })
    }

    fn uses_workspace(&self) -> bool {
        true
    }
}

impl FsWrite {
    /// The tool's name, as calls to it are logged.
    pub(crate) const NAME: &'static str = "fs.write";

    /// What `fs.write` does with its arguments in `workspace`: the one place
    /// its rules live, shared by the tool and by the rebuild of a workspace
    /// from the log (session::workspace), so a replayed write is judged
    /// exactly as the live one was.
    pub(crate) async fn write_in(
        workspace: PathBuf,
        arguments: serde_json::Value,
    ) -> Result<String, ToolError> {
        let WriteArgs { path, content } = args(arguments)?;
        std::fs::create_dir_all(&workspace)
            .map_err(|e| ToolError(format!("workspace unavailable: {e}")))?;
        let full = confine(&workspace, &path)?;
        if let Some(parent) = full.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| ToolError(format!("cannot write {path:?}: {e}")))?;
        }
        tokio::fs::write(&full, content.as_bytes())
            .await
            .map_err(|e| ToolError(format!("cannot write {path:?}: {e}")))?;
        Ok(format!("wrote {} bytes to {path}", content.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(dir: &Path) -> ToolContext {
        ToolContext {
            workspace: dir.join("ws"),
            key: "call-1".into(),
            progress: None,
        }
    }

    #[tokio::test]
    async fn write_then_read_inside_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let out = FsWrite
            .call(
                cx(dir.path()),
                serde_json::json!({"path": "a/b.txt", "content": "hi"}),
            )
            .await
            .unwrap()
            .text;
        assert!(out.contains("2 bytes"), "{out}");
        let read = FsRead { max_bytes: 100 }
            .call(cx(dir.path()), serde_json::json!({"path": "a/b.txt"}))
            .await
            .unwrap();
        assert_eq!(read, ToolAnswer::from("hi".to_string()));
    }

    #[tokio::test]
    async fn paths_outside_the_workspace_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        for path in ["../secret", "/etc/passwd", "a/../../secret", ""] {
            let err = FsRead { max_bytes: 100 }
                .call(cx(dir.path()), serde_json::json!({ "path": path }))
                .await
                .unwrap_err();
            assert!(err.0.contains("outside the workspace"), "{path}: {err}");
        }
    }

    #[tokio::test]
    async fn symlinks_out_of_the_workspace_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ws")).unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), dir.path().join("ws/link")).unwrap();
        let err = FsRead { max_bytes: 100 }
            .call(cx(dir.path()), serde_json::json!({"path": "link"}))
            .await
            .unwrap_err();
        assert!(err.0.contains("outside the workspace"), "{err}");
    }

    #[tokio::test]
    async fn oversized_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ws")).unwrap();
        std::fs::write(dir.path().join("ws/big"), "0123456789").unwrap();
        let err = FsRead { max_bytes: 4 }
            .call(cx(dir.path()), serde_json::json!({"path": "big"}))
            .await
            .unwrap_err();
        assert!(err.0.contains("limit"), "{err}");
    }
}
