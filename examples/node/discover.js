'use strict';
// node discover.js --target HOST:PORT [--state FILE] [--private] E164...
// Prints {"matches": [...], "charged": N, "quota_remaining": M} as JSON; with --state, keeps
// the re-sync token, or with --private the OPRF outputs (mode 0600), so that the next run of
// the same numbers costs nothing.

const fs = require('node:fs');
const { Client } = require('./onnet');

function parse(argv) {
  const options = { target: '127.0.0.1:50051', state: null, private: false, numbers: [] };
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--target') options.target = argv[(i += 1)];
    else if (argv[i] === '--private') options.private = true;
    else if (argv[i] === '--state') options.state = argv[(i += 1)];
    else options.numbers.push(argv[i]);
  }
  return options;
}

async function main() {
  const options = parse(process.argv.slice(2));
  const saved = options.state && fs.existsSync(options.state)
    ? JSON.parse(fs.readFileSync(options.state, 'utf8'))
    : {};
  const client = new Client(options.target, { token: process.env.ONNET_TOKEN || null });
  try {
    const result = options.private
      ? await client.discoverPrivate(options.numbers, saved.private)
      : await client.discover(options.numbers, saved.hashed);
    if (options.state) {
      const kept = { ...saved, [options.private ? 'private' : 'hashed']: result.state };
      fs.writeFileSync(options.state, JSON.stringify(kept), { mode: 0o600 });
    }
    const quota = await client.quotaRemaining();
    console.log(JSON.stringify({ matches: result.matches, charged: result.charged, quota_remaining: quota }));
  } finally {
    client.close();
  }
}

main().catch((error) => {
  console.error(`onnet-node: ${error.details || error.message}`);
  process.exit(1);
});
