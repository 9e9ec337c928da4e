//! The image the output holder runs: `FROM scratch` with one 129-byte program that pauses
//! forever, built by the sandbox itself.
//!
//! Owns: the program (written out byte by byte: the station cannot pull images and carries no
//! toolchain), the Dockerfile and build context, the content label that tells a current image
//! from one an older station version built, and finding or building the image
//! ([`find_or_build`]). These are the only bollard calls of the sandbox outside
//! [`super::bollard_engine`]: they run once per sandbox, not per run, behind
//! [`SandboxEngine::output_holder_image`](super::engine::SandboxEngine::output_holder_image).
//!
//! Does not start holders or decide what they mount: [`super::output_slot`] and
//! [`crate::spec::output_slot_holder_body`] do.

use std::io;

use bollard::errors::Error as DockerError;
use bollard::query_parameters::BuildImageOptionsBuilder;
use bollard::Docker;
use futures_util::stream::StreamExt;
use sha2::{Digest, Sha256};

use super::bollard_engine::status_code;

/// Tag of the image the output holder runs. The sandbox refers to it by id once built; the tag
/// only tells an operator what the image is for.
const OUTPUT_HOLDER_IMAGE_TAG: &str = "pht-output-holder:v1";

/// Label on the output holder image carrying [`output_holder_content_digest`], so that an image
/// built by an earlier station process (or another version) is reused only if it is this one.
const LABEL_OUTPUT_HOLDER_CONTENT: &str = "org.pht.output-holder.content";

/// Serializes holder image builds within this process: sandboxes starting together find the
/// image the first one built instead of each building their own.
static OUTPUT_HOLDER_BUILD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The id of the output holder image: the tagged image if its content label matches, otherwise a
/// fresh build.
pub(super) async fn find_or_build(docker: &Docker) -> Result<String, DockerError> {
    let _build_lock = OUTPUT_HOLDER_BUILD_LOCK.lock().await;
    let content_digest = output_holder_content_digest();
    match docker.inspect_image(OUTPUT_HOLDER_IMAGE_TAG).await {
        Ok(image) => {
            let labels = image.config.and_then(|config| config.labels);
            let is_current = labels
                .as_ref()
                .and_then(|labels| labels.get(LABEL_OUTPUT_HOLDER_CONTENT))
                .is_some_and(|digest| *digest == content_digest);
            if let (true, Some(image_id)) = (is_current, image.id) {
                return Ok(image_id);
            }
        }
        Err(error) if status_code(&error) == Some(404) => {}
        Err(error) => return Err(error),
    }
    build(docker).await
}

/// Builds the output holder image: `FROM scratch` with one program that sleeps forever.
async fn build(docker: &Docker) -> Result<String, DockerError> {
    let context =
        output_holder_build_context().map_err(|error| DockerError::IOError { err: error })?;
    let options = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(OUTPUT_HOLDER_IMAGE_TAG)
        .rm(true)
        .forcerm(true)
        .build();
    let mut build_stream =
        docker.build_image(options, None, Some(bollard::body_full(context.into())));
    let mut image_id = None;
    while let Some(build_info) = build_stream.next().await {
        let build_info = build_info?;
        if let Some(id) = build_info.aux.and_then(|aux| aux.id) {
            image_id = Some(id);
        }
    }
    match image_id {
        Some(image_id) => Ok(image_id),
        // Older engines do not report the id; the tag was just set by this build.
        None => docker
            .inspect_image(OUTPUT_HOLDER_IMAGE_TAG)
            .await?
            .id
            .ok_or_else(|| DockerError::DockerStreamError {
                error: format!("the build of {OUTPUT_HOLDER_IMAGE_TAG} reported no image id"),
            }),
    }
}

const OUTPUT_HOLDER_DOCKERFILE: &str = "FROM scratch\n\
                                        COPY pause /pause\n\
                                        USER 65534:65534\n\
                                        ENTRYPOINT [\"/pause\"]\n";

/// SHA-256 of what the holder image is built from.
fn output_holder_content_digest() -> String {
    let mut hasher = Sha256::new();
    hasher.update(OUTPUT_HOLDER_DOCKERFILE.as_bytes());
    hasher.update(pause_program());
    hex::encode(hasher.finalize())
}

fn output_holder_build_context() -> io::Result<Vec<u8>> {
    let dockerfile = format!(
        "{OUTPUT_HOLDER_DOCKERFILE}LABEL org.pht.role=output-holder-image {LABEL_OUTPUT_HOLDER_CONTENT}={}\n",
        output_holder_content_digest()
    );
    let mut builder = tar::Builder::new(Vec::new());
    for (path, mode, content) in [
        ("Dockerfile", 0o644, dockerfile.into_bytes()),
        ("pause", 0o555, pause_program()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, path, content.as_slice())?;
    }
    builder.into_inner()
}

/// A complete static x86-64 Linux program, 129 bytes, that calls `pause(2)` forever. It is the
/// output holder's only content: the station cannot pull images and carries no toolchain, so the
/// program is written out here, header field by header field.
fn pause_program() -> Vec<u8> {
    const LOAD_ADDRESS: u64 = 0x40_0000;
    const ELF_HEADER_BYTES: u16 = 64;
    const PROGRAM_HEADER_BYTES: u16 = 56;
    // loop: mov eax, 34 (SYS_pause); syscall; jmp loop
    const CODE: [u8; 9] = [0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7];
    let code_offset = u64::from(ELF_HEADER_BYTES + PROGRAM_HEADER_BYTES);
    let file_bytes = code_offset + CODE.len() as u64;

    let mut program = Vec::with_capacity(file_bytes as usize);
    // ELF header: magic, 64-bit, little-endian, version 1, System V ABI, padding.
    program.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    program.extend_from_slice(&[0; 8]);
    program.extend_from_slice(&2u16.to_le_bytes()); // an executable
    program.extend_from_slice(&0x3eu16.to_le_bytes()); // for x86-64
    program.extend_from_slice(&1u32.to_le_bytes()); // ELF version
    program.extend_from_slice(&(LOAD_ADDRESS + code_offset).to_le_bytes()); // entry point
    program.extend_from_slice(&u64::from(ELF_HEADER_BYTES).to_le_bytes()); // program headers at
    program.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    program.extend_from_slice(&0u32.to_le_bytes()); // no flags
    program.extend_from_slice(&ELF_HEADER_BYTES.to_le_bytes());
    program.extend_from_slice(&PROGRAM_HEADER_BYTES.to_le_bytes());
    program.extend_from_slice(&1u16.to_le_bytes()); // one program header
    program.extend_from_slice(&[0; 6]); // section header size, count and name index

    // Program header: load the whole file, readable and executable, at LOAD_ADDRESS.
    program.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    program.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    program.extend_from_slice(&0u64.to_le_bytes()); // from file offset 0
    program.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // virtual address
    program.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // physical address
    program.extend_from_slice(&file_bytes.to_le_bytes()); // bytes in the file
    program.extend_from_slice(&file_bytes.to_le_bytes()); // bytes in memory
    program.extend_from_slice(&0x1000u64.to_le_bytes()); // page alignment
    program.extend_from_slice(&CODE);
    program
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use expect_test::expect;

    use super::*;

    #[test]
    fn the_output_holder_image_is_built_from_scratch_and_labelled_with_its_content() {
        let context = output_holder_build_context().expect("in-memory tar");
        let mut archive = tar::Archive::new(context.as_slice());
        let mut listing = Vec::new();
        for entry in archive.entries().expect("a tar archive") {
            let mut entry = entry.expect("a tar entry");
            let path = entry.path().expect("a path").display().to_string();
            let mode = entry.header().mode().expect("a mode");
            let mut content = Vec::new();
            entry.read_to_end(&mut content).expect("readable");
            let shown = if path == "Dockerfile" {
                String::from_utf8(content).expect("text")
            } else {
                format!("{} bytes\n", content.len())
            };
            listing.push(format!("{path} {mode:o}\n{shown}"));
        }
        expect![[r#"
            Dockerfile 644
            FROM scratch
            COPY pause /pause
            USER 65534:65534
            ENTRYPOINT ["/pause"]
            LABEL org.pht.role=output-holder-image org.pht.output-holder.content=c1e4d94ae338ec606edb9bcc8867137ddad8b2a93e2be8a35ca671802b8912bd

            pause 555
            129 bytes
        "#]].assert_eq(&listing.join("\n"));
    }

    #[test]
    fn the_pause_program_is_the_known_129_bytes() {
        expect!["7f454c4602010100000000000000000002003e0001000000780040000000000040000000000000000000000000000000000000004000380001000000000000000100000005000000000000000000000000004000000000000000400000000000810000000000000081000000000000000010000000000000b8220000000f05ebf7"].assert_eq(&hex::encode(pause_program()));
    }
}
