//! The smallest useful adapter: `execute` answers `ok` with the params echoed.
//! It measures the supervisor's own cost (benches) and shows the SDK at its simplest.

use switchyard_plugin::protocol::{ExecuteParams, ExecuteResult, InitializeParams};
use switchyard_plugin::sdk::{self, Adapter, AdapterError, Context};

struct Echo;

impl Adapter for Echo {
    const NAME: &'static str = "echo";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn initialize(_params: InitializeParams) -> Result<Self, AdapterError> {
        Ok(Echo)
    }

    async fn execute(
        &self,
        req: ExecuteParams,
        _ctx: Context,
    ) -> Result<ExecuteResult, AdapterError> {
        Ok(ExecuteResult {
            ok: true,
            effects: vec![],
            output: Some(req.params.to_string()),
            reason: None,
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    sdk::serve::<Echo>().await;
}
