//! Tests of the fake ComfyUI (tests/common/fake_comfyui), spoken to over real HTTP and
//! websockets the way PROTOCOL.md describes, so that tests of drawdrop's ComfyUI backend can
//! trust it.

#[path = "common/fake_comfyui/mod.rs"]
mod fake_comfyui;

use fake_comfyui::FakeComfyUi;

#[tokio::test]
async fn starts() {
    let fake = FakeComfyUi::start().await;
    assert!(fake.is_running());
}
