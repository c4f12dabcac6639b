//! The `/sdapi/v1/img2img` JSON that Draw Things' HTTP API and AUTOMATIC1111 both speak:
//! the request body built in one pass (`request`), a successful answer's pictures read as
//! they stream in (`stream`) or from a whole body (`answer`), and an error answer's reason.

pub(crate) mod answer;
pub(crate) mod request;
pub(crate) mod stream;

/// The endpoint both kinds take img2img requests at.
pub(crate) const IMG2IMG: &str = "sdapi/v1/img2img";
