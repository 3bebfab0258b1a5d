// Produces real TON transactions offline with @ton/sandbox and prints them shaped like toncenter
// API v3 `/api/v3/transactions` objects, for farthing-ton's tests (fixtures.json).
//
// Usage:
//   node generate.mjs accounts            prints {"network", "accounts"} (no transactions)
//   node generate.mjs run < spec.json     runs the scenarios of the spec, prints the result JSON
// A scenario is a TON payment (kind ton), a jetton payment (kind jetton), or one message a wallet
// signs exactly as a TON Connect request gives it (kind message: {from, message: {address,
// amount, payload}}, or `messages` for several in one external message) — also from the
// merchant's wallet, as refunds farthing prepared.
//
// Everything is deterministic: keys come from fixed seeds, the sandbox clock is set explicitly, so
// the same input gives byte-identical output (the program checks this by running twice).
//
// Timeline: setup (wallet deploys, jetton masters, mints) runs at `now - 60`; scenario i runs at
// `now + 5 * i`. Setup transactions are not part of the output.
//
// Jetton code: the standard TEP-74 minter and wallet (ton-blockchain/token-contract) as shipped
// pre-compiled in @ton-community/assets-sdk; nothing is compiled at run time. Only the code BoCs are
// taken from that package; the messages are built here.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import {
  Address,
  Cell,
  Dictionary,
  SendMode,
  beginCell,
  contractAddress,
  external,
  internal,
  loadMessage,
  storeStateInit,
  storeTransaction,
  toNano,
} from '@ton/core';
import { keyPairFromSeed } from '@ton/crypto';
import { Blockchain } from '@ton/sandbox';
import { WalletContractV4, WalletContractV5R1 } from '@ton/ton';

const require = createRequire(import.meta.url);
const { jettonMinterCode } = require('@ton-community/assets-sdk/dist/jetton/contracts/build/jetton-minter.js');
const { jettonWalletCode } = require('@ton-community/assets-sdk/dist/jetton/contracts/build/jetton-wallet.js');

const MINTER_CODE = Cell.fromBase64(jettonMinterCode.codeBoc);
const WALLET_CODE = Cell.fromBase64(jettonWalletCode.codeBoc);

const DEFAULT_NOW = 1790000000;
const SETUP_OFFSET = 60; // setup runs this many seconds before `now`
const SCENARIO_STEP = 5; // seconds between scenarios
const MC_SEQNO_BASE = 40000000; // synthetic masterchain seqno of the first scenario transaction
const SHARD_SEQNO_BASE = 45000000; // synthetic shard block seqno

const OP = {
  comment: 0x00000000,
  transfer: 0x0f8a7ea5,
  internalTransfer: 0x178d4519,
  transferNotification: 0x7362d09c,
  excesses: 0xd53276db,
  mint: 21, // standard minter's mint op
};

class CheckError extends Error {}
function check(cond, message) {
  if (!cond) throw new CheckError(message);
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const seed32 = (label) => createHash('sha256').update(`farthing-ton-sandbox/${label}`).digest();
const b64 = (buf) => Buffer.from(buf).toString('base64');
const hashB64 = (cell) => b64(cell.hash());
const bocB64 = (cell) => cell.toBoc().toString('base64'); // idx:false, crc32:true ("te6cck…")
const bigHashB64 = (n) => b64(Buffer.from(n.toString(16).padStart(64, '0'), 'hex'));
const rawUpper = (addr) => `${addr.workChain}:${addr.hash.toString('hex').toUpperCase()}`;
const rawFromBig = (wc, n) => `${wc}:${n.toString(16).padStart(64, '0').toUpperCase()}`;
const opHex = (n) => `0x${(n >>> 0).toString(16).padStart(8, '0')}`;

function commentCell(text) {
  return beginCell().storeUint(OP.comment, 32).storeStringTail(text).endCell();
}

function friendly(addr, network) {
  const testOnly = network === 'testnet';
  return {
    raw: rawUpper(addr),
    bounceable: addr.toString({ urlSafe: true, bounceable: true, testOnly }),
    non_bounceable: addr.toString({ urlSafe: true, bounceable: false, testOnly }),
  };
}

// TEP-64 on-chain metadata: 0x00 prefix + dict sha256(key) -> ^(0x00 + snake string).
function onchainContent(fields) {
  const dict = Dictionary.empty(Dictionary.Keys.Buffer(32), Dictionary.Values.Cell());
  for (const [key, value] of Object.entries(fields)) {
    dict.set(createHash('sha256').update(key).digest(), beginCell().storeUint(0, 8).storeStringTail(value).endCell());
  }
  return beginCell().storeUint(0, 8).storeDict(dict).endCell();
}

const USDT_CONTENT = onchainContent({
  name: 'Tether USD',
  symbol: 'USD₮',
  decimals: '6',
  description: 'Tether Token for Tether USD',
  image: 'https://tether.to/images/logoCircle.png',
});

// Standard minter data: total_supply:Coins admin:MsgAddress content:^Cell wallet_code:^Cell
function minterInit(admin) {
  const data = beginCell().storeCoins(0).storeAddress(admin).storeRef(USDT_CONTENT).storeRef(WALLET_CODE).endCell();
  return { code: MINTER_CODE, data };
}

// Standard wallet data: balance:Coins owner:MsgAddress master:MsgAddress wallet_code:^Cell
function offlineJettonWallet(master, owner) {
  const data = beginCell().storeCoins(0).storeAddress(owner).storeAddress(master).storeRef(WALLET_CODE).endCell();
  return contractAddress(0, { code: WALLET_CODE, data });
}

function mintBody(to, jettonAmount, queryId) {
  const internalTransfer = beginCell()
    .storeUint(OP.internalTransfer, 32)
    .storeUint(queryId, 64)
    .storeCoins(jettonAmount)
    .storeAddress(null) // from
    .storeAddress(null) // response_address: no excesses
    .storeCoins(0) // forward_ton_amount
    .storeBit(0) // forward_payload: empty, inline
    .endCell();
  return beginCell()
    .storeUint(OP.mint, 32)
    .storeUint(queryId, 64)
    .storeAddress(to)
    .storeCoins(toNano('0.05')) // TON for the new jetton wallet
    .storeRef(internalTransfer)
    .endCell();
}

// TEP-74 transfer, forward_payload = the comment inline (Either bit 0) or in a ref (bit 1).
function jettonTransferBody({ queryId, amount, destination, responseDestination, forwardTonAmount, comment, commentInRef }) {
  const b = beginCell()
    .storeUint(OP.transfer, 32)
    .storeUint(queryId, 64)
    .storeCoins(amount)
    .storeAddress(destination)
    .storeAddress(responseDestination)
    .storeBit(0) // custom_payload: nothing
    .storeCoins(forwardTonAmount);
  if (comment === null) {
    b.storeBit(0);
  } else if (commentInRef) {
    b.storeBit(1).storeRef(commentCell(comment));
  } else {
    b.storeBit(0).storeUint(OP.comment, 32).storeStringTail(comment);
  }
  return b.endCell();
}

// ---------------------------------------------------------------------------------------------
// toncenter v3 conversion

const STATUS = { uninitialized: 'uninit', frozen: 'frozen', active: 'active', 'non-existing': 'nonexist' };
const SKIP_REASON = { 'no-state': 'no_state', 'bad-state': 'bad_state', 'no-gas': 'no_gas' };
const str = (v) => (v === undefined || v === null ? undefined : v.toString());

function dropUndefined(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

function msgSize(s) {
  return { cells: s.cells.toString(), bits: s.bits.toString() };
}

function convertDescription(d) {
  check(d.type === 'generic', `unexpected transaction description type ${d.type}`);
  const out = { type: 'ord', aborted: d.aborted, destroyed: d.destroyed, credit_first: d.creditFirst };
  if (d.storagePhase) {
    out.storage_ph = dropUndefined({
      storage_fees_collected: d.storagePhase.storageFeesCollected.toString(),
      storage_fees_due: str(d.storagePhase.storageFeesDue),
      status_change: d.storagePhase.statusChange,
    });
  }
  if (d.creditPhase) {
    out.credit_ph = dropUndefined({
      due_fees_collected: str(d.creditPhase.dueFeesColelcted),
      credit: d.creditPhase.credit.coins.toString(),
    });
  }
  const c = d.computePhase;
  if (c.type === 'skipped') {
    out.compute_ph = { skipped: true, reason: SKIP_REASON[c.reason] ?? c.reason };
  } else {
    out.compute_ph = dropUndefined({
      skipped: false,
      success: c.success,
      msg_state_used: c.messageStateUsed,
      account_activated: c.accountActivated,
      gas_fees: c.gasFees.toString(),
      gas_used: c.gasUsed.toString(),
      gas_limit: c.gasLimit.toString(),
      gas_credit: str(c.gasCredit),
      mode: c.mode,
      exit_code: c.exitCode,
      exit_arg: c.exitArg ?? undefined,
      vm_steps: c.vmSteps,
      vm_init_state_hash: bigHashB64(c.vmInitStateHash),
      vm_final_state_hash: bigHashB64(c.vmFinalStateHash),
    });
  }
  const a = d.actionPhase;
  if (a) {
    out.action = dropUndefined({
      success: a.success,
      valid: a.valid,
      no_funds: a.noFunds,
      status_change: a.statusChange,
      total_fwd_fees: str(a.totalFwdFees),
      total_action_fees: str(a.totalActionFees),
      result_code: a.resultCode,
      result_arg: a.resultArg ?? undefined,
      tot_actions: a.totalActions,
      spec_actions: a.specActions,
      skipped_actions: a.skippedActions,
      msgs_created: a.messagesCreated,
      action_list_hash: bigHashB64(a.actionListHash),
      tot_msg_size: msgSize(a.totalMessageSize),
    });
  }
  const bp = d.bouncePhase;
  if (bp) {
    if (bp.type === 'ok') {
      out.bounce = { type: 'ok', msg_size: msgSize(bp.messageSize), msg_fees: bp.messageFees.toString(), fwd_fees: bp.forwardFees.toString() };
    } else if (bp.type === 'no-funds') {
      out.bounce = { type: 'nofunds', msg_size: msgSize(bp.messageSize), req_fwd_fees: bp.requiredForwardFees.toString() };
    } else {
      out.bounce = { type: 'negfunds' };
    }
  }
  return out;
}

function decodeBody(body) {
  const s = body.beginParse();
  if (s.remainingBits < 32) return { opcode: null, decoded: null };
  const op = s.loadUint(32);
  let decoded = null;
  if (op === 0) {
    try {
      decoded = { type: 'text_comment', '@type': 'text_comment', comment: s.loadStringTail() };
    } catch {
      decoded = null;
    }
  }
  return { opcode: opHex(op), decoded };
}

// TEP-467 normalized hash of an external-in message: src addr_none, import_fee 0, no init, body in a ref.
function normalizedExtHash(msg) {
  return beginCell()
    .storeUint(0b10, 2)
    .storeUint(0, 2)
    .storeAddress(msg.info.dest)
    .storeCoins(0)
    .storeBit(0)
    .storeBit(1)
    .storeRef(msg.body)
    .endCell()
    .hash();
}

// `cell` is the message cell exactly as stored in the transaction.
function convertMessage(cell) {
  const msg = loadMessage(cell.beginParse());
  const info = msg.info;
  const { opcode, decoded } = decodeBody(msg.body);
  const initCell = msg.init ? beginCell().store(storeStateInit(msg.init)).endCell() : null;
  const common = {
    hash: hashB64(cell),
    source: null,
    destination: null,
    value: null,
    value_extra_currencies: null,
    fwd_fee: null,
    ihr_fee: null,
    extra_flags: null,
    created_lt: null,
    created_at: null,
    opcode,
    decoded_opcode: null,
    ihr_disabled: null,
    bounce: null,
    bounced: null,
    import_fee: null,
    message_content: { hash: hashB64(msg.body), body: bocB64(msg.body), decoded },
    init_state: initCell ? { hash: hashB64(initCell), body: bocB64(initCell), decoded: null } : null,
  };
  if (info.type === 'internal') {
    return {
      ...common,
      source: rawUpper(info.src),
      destination: rawUpper(info.dest),
      value: info.value.coins.toString(),
      value_extra_currencies: {},
      fwd_fee: info.forwardFee.toString(),
      ihr_fee: info.ihrFee.toString(),
      extra_flags: info.ihrFee.toString(), // the same TL-B field, renamed in newer TON
      created_lt: info.createdLt.toString(),
      created_at: info.createdAt.toString(),
      ihr_disabled: info.ihrDisabled,
      bounce: info.bounce,
      bounced: info.bounced,
    };
  }
  if (info.type === 'external-in') {
    return {
      ...common,
      destination: rawUpper(info.dest),
      import_fee: info.importFee.toString(),
      hash_norm: b64(normalizedExtHash(msg)),
    };
  }
  return {
    ...common,
    source: rawUpper(info.src),
    created_lt: info.createdLt.toString(),
    created_at: info.createdAt.toString(),
  };
}

// The raw message cells of a transaction: ^[in_msg:(Maybe ^Message) out_msgs:(HashmapE 15 ^Message)]
function txMessageCells(tx) {
  const s = tx.raw.refs[0].beginParse();
  const inCell = s.loadBit() ? s.loadRef() : null;
  const outDict = s.loadDict(Dictionary.Keys.Uint(15), Dictionary.Values.Cell());
  const outCells = outDict.keys().sort((a, b) => a - b).map((k) => outDict.get(k));
  return { inCell, outCells };
}

// A toncenter v3 AccountState from the sandbox's raw ShardAccount (base64 BoC).
function accountState(shardAccountB64) {
  const shard = Cell.fromBase64(shardAccountB64);
  const accountCell = shard.refs[0];
  const out = { hash: hashB64(accountCell), balance: '0', extra_currencies: {}, account_status: 'nonexist', frozen_hash: null, data_hash: null, code_hash: null };
  return { cell: accountCell, out };
}

function fillAccountState(state, parsed) {
  const acc = parsed.account;
  if (!acc) return state;
  state.balance = acc.storage.balance.coins.toString();
  const st = acc.storage.state;
  if (st.type === 'active') {
    state.account_status = 'active';
    state.data_hash = st.state.data ? hashB64(st.state.data) : null;
    state.code_hash = st.state.code ? hashB64(st.state.code) : null;
  } else if (st.type === 'frozen') {
    state.account_status = 'frozen';
    state.frozen_hash = bigHashB64(st.stateHash);
  } else {
    state.account_status = 'uninit';
  }
  return state;
}

function snapshotAccount(contract) {
  // `_account` is the ShardAccount BoC exactly as returned by the emulator.
  const { cell, out } = accountState(contract._account);
  return { cell, out: fillAccountState(out, contract.account) };
}

// ---------------------------------------------------------------------------------------------
// Setup

async function setup(now, network) {
  const blockchain = await Blockchain.create({ config: 'default', uiOptions: { enabled: false } });
  blockchain.verbosity = { print: false, blockchainLogs: false, vmLogs: 'none', debugLogs: false };
  blockchain.random = Buffer.alloc(32);
  blockchain.now = now - SETUP_OFFSET;
  const timeout = () => blockchain.now + 60;

  const treasury = await blockchain.treasury('farthing-setup');
  const fakeAdmin = await blockchain.treasury('farthing-fake-admin');

  const keys = {};
  const wallets = {};
  const mk = (role, kind) => {
    keys[role] = keyPairFromSeed(seed32(role));
    const args = { workchain: 0, publicKey: keys[role].publicKey };
    wallets[role] = kind === 'v4' ? WalletContractV4.create(args) : WalletContractV5R1.create(args);
  };
  mk('merchant', 'v5r1');
  mk('undeployed', 'v5r1');
  mk('payer', 'v5r1');
  mk('payer2', 'v4');

  const funding = { merchant: toNano('5'), payer: toNano('1000'), payer2: toNano('1000') };
  for (const [role, value] of Object.entries(funding)) {
    await treasury.send({ to: wallets[role].address, value, bounce: false });
    const w = blockchain.openContract(wallets[role]);
    // The first external message carries the StateInit and deploys the wallet.
    await w.sendTransfer({
      seqno: 0,
      secretKey: keys[role].secretKey,
      messages: [internal({ to: treasury.address, value: toNano('0.01'), bounce: false })],
      sendMode: SendMode.PAY_GAS_SEPARATELY | SendMode.IGNORE_ERRORS,
      timeout: timeout(),
    });
    const state = (await blockchain.getContract(wallets[role].address)).accountState;
    check(state?.type === 'active', `setup: ${role} wallet was not deployed`);
  }

  const masters = {};
  const deployMaster = async (role, admin, adminSender) => {
    const init = minterInit(admin);
    const address = contractAddress(0, init);
    await adminSender.send({ to: address, value: toNano('1'), init, bounce: false });
    masters[role] = address;
    check((await blockchain.getContract(address)).accountState?.type === 'active', `setup: ${role} not deployed`);
  };
  await deployMaster('usdt_master', treasury.address, treasury);
  await deployMaster('fake_master', fakeAdmin.address, fakeAdmin);

  const mints = [
    ['usdt_master', treasury, 'payer', 1_000_000_000_000n],
    ['usdt_master', treasury, 'payer2', 1_000_000_000_000n],
    ['fake_master', fakeAdmin, 'payer', 1_000_000_000_000n],
  ];
  for (const [i, [master, admin, owner, amount]] of mints.entries()) {
    await admin.send({ to: masters[master], value: toNano('0.2'), body: mintBody(wallets[owner].address, amount, BigInt(i + 1)) });
  }

  const getWalletAddress = [];
  const jettonWallet = async (master, owner, record) => {
    const ownerCell = beginCell().storeAddress(wallets[owner].address).endCell();
    const res = await blockchain.runGetMethod(masters[master], 'get_wallet_address', [{ type: 'slice', cell: ownerCell }]);
    check(res.exitCode === 0, `get_wallet_address(${master}, ${owner}) exit code ${res.exitCode}`);
    check(res.stack.length === 1 && res.stack[0].type === 'slice', `get_wallet_address(${master}, ${owner}): unexpected stack`);
    const resultCell = res.stack[0].cell;
    const address = resultCell.beginParse().loadAddress();
    const offline = offlineJettonWallet(masters[master], wallets[owner].address);
    check(address.equals(offline), `get_wallet_address(${master}, ${owner}) = ${rawUpper(address)}, offline formula gives ${rawUpper(offline)}`);
    if (record) {
      getWalletAddress.push({
        master: rawUpper(masters[master]),
        owner: rawUpper(wallets[owner].address),
        response: { gas_used: Number(res.gasUsed), exit_code: res.exitCode, stack: [{ type: 'slice', value: bocB64(resultCell) }] },
      });
    }
    return address;
  };
  const jw = {
    merchant_usdt_wallet: await jettonWallet('usdt_master', 'merchant', true),
    merchant_fake_wallet: await jettonWallet('fake_master', 'merchant', true),
    undeployed_usdt_wallet: await jettonWallet('usdt_master', 'undeployed', true),
    payer_usdt_wallet: await jettonWallet('usdt_master', 'payer', false),
    payer2_usdt_wallet: await jettonWallet('usdt_master', 'payer2', false),
    payer_fake_wallet: await jettonWallet('fake_master', 'payer', false),
  };
  for (const role of ['payer_usdt_wallet', 'payer2_usdt_wallet', 'payer_fake_wallet']) {
    check((await blockchain.getContract(jw[role])).accountState?.type === 'active', `setup: ${role} not minted`);
  }

  const addresses = {
    merchant: wallets.merchant.address,
    undeployed: wallets.undeployed.address,
    payer: wallets.payer.address,
    payer2: wallets.payer2.address,
    usdt_master: masters.usdt_master,
    fake_master: masters.fake_master,
    merchant_usdt_wallet: jw.merchant_usdt_wallet,
    payer_usdt_wallet: jw.payer_usdt_wallet,
    payer2_usdt_wallet: jw.payer2_usdt_wallet,
    merchant_fake_wallet: jw.merchant_fake_wallet,
    payer_fake_wallet: jw.payer_fake_wallet,
  };
  // The sandbox models a never-seen address as an empty *uninit* account; on chain it is
  // account_none ("nonexist"). Make the accounts that must start out missing really missing.
  for (const role of ['undeployed', 'merchant_usdt_wallet', 'merchant_fake_wallet']) {
    const contract = await blockchain.getContract(addresses[role]);
    check(contract.balance === 0n && contract.accountState?.type !== 'active', `setup: ${role} unexpectedly exists`);
    await blockchain.setShardAccount(addresses[role], { account: undefined, lastTransactionLt: 0n, lastTransactionHash: 0n });
  }
  const accounts = Object.fromEntries(Object.entries(addresses).map(([role, a]) => [role, friendly(a, network)]));
  return { blockchain, keys, wallets, masters, jw, addresses, accounts, getWalletAddress };
}

// ---------------------------------------------------------------------------------------------
// Spec

function parseSpec(spec) {
  check(spec && typeof spec === 'object', 'spec: not a JSON object');
  const now = spec.now ?? DEFAULT_NOW;
  check(Number.isInteger(now) && now > SETUP_OFFSET, 'spec: "now" must be an integer (unix seconds)');
  const network = spec.network ?? 'testnet';
  check(network === 'testnet' || network === 'mainnet', 'spec: "network" must be "testnet" or "mainnet"');
  const scenarios = spec.scenarios ?? [];
  check(Array.isArray(scenarios), 'spec: "scenarios" must be an array');
  const ids = new Set();
  for (const s of scenarios) {
    check(typeof s.id === 'string' && !ids.has(s.id), `spec: scenario id missing or duplicated: ${JSON.stringify(s.id)}`);
    ids.add(s.id);
    if (s.kind === 'message') {
      // A wallet signs TON Connect messages exactly as given — `message`, or several in one
      // external message as `messages` — each {address (user-friendly), amount (nanoton),
      // payload (base64 BoC)}: what farthing hands a wallet to sign.
      check(['merchant', 'payer', 'payer2'].includes(s.from), `spec ${s.id}: "from" must be merchant, payer or payer2`);
      const list = s.messages ?? [s.message];
      check(Array.isArray(list) && list.length > 0 && list.length <= 4, `spec ${s.id}: 1 to 4 messages`);
      for (const m of list) {
        check(m && typeof m.address === 'string' && /^\d+$/.test(String(m.amount)), `spec ${s.id}: a message needs address and amount`);
        check(m.payload === undefined || typeof m.payload === 'string', `spec ${s.id}: bad payload`);
      }
      continue;
    }
    check(['payer', 'payer2'].includes(s.from), `spec ${s.id}: "from" must be payer or payer2`);
    check(/^\d+$/.test(String(s.amount)), `spec ${s.id}: "amount" must be a decimal string`);
    check(s.comment === undefined || s.comment === null || typeof s.comment === 'string', `spec ${s.id}: bad comment`);
    if (s.kind === 'ton') {
      check(['merchant', 'undeployed'].includes(s.to), `spec ${s.id}: "to" must be merchant or undeployed`);
      check(s.bounce === undefined || typeof s.bounce === 'boolean', `spec ${s.id}: "bounce" must be a boolean`);
    } else if (s.kind === 'jetton') {
      check(['usdt', 'fake'].includes(s.jetton), `spec ${s.id}: "jetton" must be usdt or fake`);
      check(s.to === 'merchant', `spec ${s.id}: jetton "to" must be merchant`);
      check(!(s.jetton === 'fake' && s.from !== 'payer'), `spec ${s.id}: only payer holds the fake jetton`);
      check(s.forward_ton_amount === undefined || /^\d+$/.test(String(s.forward_ton_amount)), `spec ${s.id}: bad forward_ton_amount`);
    } else {
      check(false, `spec ${s.id}: "kind" must be ton, jetton or message`);
    }
  }
  return { now, network, scenarios };
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async function runScenarios(env, spec) {
  const { blockchain, keys, wallets, masters, addresses } = env;
  const roleOf = new Map(Object.entries(addresses).map(([role, a]) => [rawUpper(a), role]));
  const states = new Map(); // raw address -> {cell, out}: the current account state
  const out = [];
  let blockIndex = 0;

  for (const [i, s] of spec.scenarios.entries()) {
    const now = spec.now + SCENARIO_STEP * i;
    blockchain.now = now;
    for (const a of Object.values(addresses)) states.set(rawUpper(a), snapshotAccount(await blockchain.getContract(a)));

    const comment = s.comment ?? null;
    let message;
    let signed = null;
    if (s.kind === 'message') {
      signed = (s.messages ?? [s.message]).map((m) => {
        const target = Address.parseFriendly(m.address);
        return internal({
          to: target.address,
          value: BigInt(m.amount),
          bounce: target.isBounceable,
          body: m.payload === undefined ? undefined : Cell.fromBase64(m.payload),
        });
      });
    } else if (s.kind === 'ton') {
      message = internal({ to: wallets[s.to].address, value: BigInt(s.amount), bounce: s.bounce ?? false, body: comment === null ? undefined : commentCell(comment) });
    } else {
      const master = masters[s.jetton === 'usdt' ? 'usdt_master' : 'fake_master'];
      const fromJw = offlineJettonWallet(master, wallets[s.from].address);
      message = internal({
        to: fromJw,
        value: toNano('0.1'),
        bounce: true,
        body: jettonTransferBody({
          queryId: BigInt(1000 + i),
          amount: BigInt(s.amount),
          destination: wallets[s.to].address,
          responseDestination: wallets[s.from].address,
          forwardTonAmount: BigInt(s.forward_ton_amount ?? '1'),
          comment,
          commentInRef: s.comment_in_ref ?? false,
        }),
      });
    }
    const wallet = wallets[s.from];
    const seqno = await blockchain.openContract(wallet).getSeqno();
    const body = wallet.createTransfer({
      seqno,
      secretKey: keys[s.from].secretKey,
      messages: signed ?? [message],
      sendMode: SendMode.PAY_GAS_SEPARATELY | SendMode.IGNORE_ERRORS,
      timeout: now + 60,
    });

    const txs = [];
    for await (const tx of await blockchain.sendMessageIter(external({ to: wallet.address, body }))) {
      const raw = rawFromBig(0, tx.address);
      check(roleOf.has(raw), `scenario ${s.id}: transaction on an unexpected account ${raw}`);
      const before = states.get(raw);
      const after = snapshotAccount(await blockchain.getContract(Address.parse(raw)));
      states.set(raw, after);
      txs.push({ tx, before, after });
    }
    check(txs.length > 0, `scenario ${s.id}: no transactions`);
    txs.sort((a, b) => (a.tx.lt < b.tx.lt ? -1 : a.tx.lt > b.tx.lt ? 1 : 0));
    const traceId = b64(txs[0].tx.hash());

    for (const { tx, before, after } of txs) {
      const raw = rawFromBig(0, tx.address);
      const boc = beginCell().store(storeTransaction(tx)).endCell();
      check(boc.hash().equals(tx.hash()), `scenario ${s.id}: storeTransaction of ${raw} lt ${tx.lt} does not reproduce the transaction hash`);
      check(before.cell.hash().equals(tx.stateUpdate.oldHash), `scenario ${s.id}: account state before tx lt ${tx.lt} does not match state_update.old_hash`);
      check(after.cell.hash().equals(tx.stateUpdate.newHash), `scenario ${s.id}: account state after tx lt ${tx.lt} does not match state_update.new_hash`);
      const { inCell, outCells } = txMessageCells(tx);
      blockIndex += 1;
      out.push({
        account: raw,
        hash: b64(tx.hash()),
        lt: tx.lt.toString(),
        now: tx.now,
        mc_block_seqno: MC_SEQNO_BASE + blockIndex,
        trace_id: traceId,
        prev_trans_hash: bigHashB64(tx.prevTransactionHash),
        prev_trans_lt: tx.prevTransactionLt.toString(),
        orig_status: STATUS[tx.oldStatus],
        end_status: STATUS[tx.endStatus],
        total_fees: tx.totalFees.coins.toString(),
        total_fees_extra_currencies: {},
        description: convertDescription(tx.description),
        block_ref: { workchain: 0, shard: '8000000000000000', seqno: SHARD_SEQNO_BASE + blockIndex },
        in_msg: inCell ? convertMessage(inCell) : null,
        out_msgs: outCells.map(convertMessage),
        account_state_before: before.out,
        account_state_after: after.out,
        emulated: false,
        finality: 'finalized',
        boc: bocB64(boc),
        scenario: s.id,
        role: roleOf.get(raw),
      });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Checks on the finished output

function checkOutput(result, spec) {
  for (const t of result.transactions) {
    const cell = Cell.fromBase64(t.boc);
    check(hashB64(cell) === t.hash, `tx ${t.hash}: hash is not the cell hash of its boc`);
  }
  const merchantUsdt = result.accounts.merchant_usdt_wallet.raw;
  const merchantFake = result.accounts.merchant_fake_wallet.raw;
  const gwa = (master) => {
    const row = result.get_wallet_address.find((r) => r.master === result.accounts[master].raw && r.owner === result.accounts.merchant.raw);
    check(row, `no get_wallet_address row for (${master}, merchant)`);
    return rawUpper(Cell.fromBase64(row.response.stack[0].value).beginParse().loadAddress());
  };
  check(gwa('usdt_master') === merchantUsdt, 'get_wallet_address(usdt_master, merchant) differs from accounts.merchant_usdt_wallet');
  check(gwa('fake_master') === merchantFake, 'get_wallet_address(fake_master, merchant) differs from accounts.merchant_fake_wallet');
  for (const s of spec.scenarios.filter((x) => x.kind === 'jetton')) {
    const expected = s.jetton === 'usdt' ? merchantUsdt : merchantFake;
    const reached = result.transactions.filter((t) => t.scenario === s.id && t.in_msg?.opcode === opHex(OP.internalTransfer));
    check(reached.length === 1, `scenario ${s.id}: expected one internal_transfer transaction, got ${reached.length}`);
    check(reached[0].account === expected, `scenario ${s.id}: internal_transfer reached ${reached[0].account}, get_wallet_address says ${expected}`);
    check(reached[0].description.aborted === false, `scenario ${s.id}: the merchant jetton wallet's transaction was aborted`);
  }
}

// ---------------------------------------------------------------------------------------------

async function generate(command, spec) {
  const env = await setup(spec.now, spec.network);
  if (command === 'accounts') return { network: spec.network, accounts: env.accounts };
  const transactions = await runScenarios(env, spec);
  const comments = [];
  for (const s of spec.scenarios) {
    if (s.comment == null || comments.some((c) => c.text === s.comment)) continue;
    const cell = commentCell(s.comment);
    comments.push({ text: s.comment, body_boc: bocB64(cell), body_hash: hashB64(cell) });
  }
  const result = { network: spec.network, accounts: env.accounts, get_wallet_address: env.getWalletAddress, comments, transactions };
  checkOutput(result, spec);
  return result;
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function main() {
  const command = process.argv[2];
  if (command !== 'accounts' && command !== 'run') {
    console.error('usage: node generate.mjs accounts\n       node generate.mjs run < spec.json');
    process.exit(2);
  }
  let spec = { now: DEFAULT_NOW, network: process.argv[3] ?? 'testnet', scenarios: [] };
  if (command === 'run') {
    const text = await readStdin();
    let json;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new CheckError(`spec: invalid JSON on stdin: ${e.message}`);
    }
    spec = json;
  }
  spec = parseSpec(spec);
  // Run twice from scratch and require byte-identical output.
  const first = JSON.stringify(await generate(command, spec), null, 2);
  const second = JSON.stringify(await generate(command, spec), null, 2);
  check(first === second, 'output is not deterministic: two runs from scratch differ');
  process.stdout.write(first + '\n');
}

main().catch((e) => {
  if (e instanceof CheckError) {
    console.error(`generate.mjs: check failed: ${e.message}`);
  } else {
    console.error(e);
  }
  process.exit(1);
});
