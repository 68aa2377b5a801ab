//! nvidia-license-server-exporter: the command. All of it is in the
//! library (`app` is the wiring); this only hands it the process.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    nvidia_license_server_exporter::main()
}
