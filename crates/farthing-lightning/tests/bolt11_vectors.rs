//! BOLT11 parsing and checking against the official BOLT #11 test vectors
//! (github.com/lightning/bolts, 11-payment-encoding.md, "Examples" and "Examples of Invalid
//! Invoices", copied exactly), plus `check` against invoices signed here.

use std::time::Duration;

use bitcoin_hashes::{sha256, Hash};
use farthing_lightning::bolt11::{self, Bolt11Error, CheckedInvoice, Expect, Network};
use farthing_lightning::PaymentHash;
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use secp256k1::{PublicKey, Secp256k1, SecretKey};
use sha2::{Digest, Sha256};

/// BOLT #11: "all the following examples are signed with `priv_key`=…".
const SPEC_PRIV_KEY: &str = "e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734";
/// BOLT #11, first example: "… to me @03e7156a…".
const SPEC_PAYEE: &str = "03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad";
/// The payment hash of most examples.
const SPEC_HASH: &str = "0001020304050607080900010203040506070809000102030405060708090102";
/// `pvjluez`: the timestamp of most examples.
const SPEC_TIMESTAMP_S: u64 = 1_496_314_658;
/// The text the "hashed" examples commit to with `h`.
const SPEC_LONG_DESCRIPTION: &str = "One piece of chocolate cake, one icecream cone, one pickle, one slice of swiss cheese, one slice of salami, one lollypop, one piece of cherry pie, one sausage, one cupcake, and one slice of watermelon";
/// BOLT #11 default expiry when there is no `x` field.
const DEFAULT_EXPIRY_S: u64 = 3600;

/// A valid example and what the spec's breakdown says it holds.
struct Valid {
    name: &'static str,
    invoice: &'static str,
    amount_msat: Option<u64>,
    payment_hash: &'static str,
    timestamp_s: u64,
    expiry_s: u64,
    network: Network,
    description: Option<&'static str>,
    /// The text whose SHA-256 is in the `h` field.
    hashed_description: Option<&'static str>,
}

fn valid_examples() -> Vec<Valid> {
    vec![
        Valid {
            name: "donation of any amount",
            invoice: "lnbc1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpl2pkx2ctnv5sxxmmwwd5kgetjypeh2ursdae8g6twvus8g6rfwvs8qun0dfjkxaq9qrsgq357wnc5r2ueh7ck6q93dj32dlqnls087fxdwk8qakdyafkq3yap9us6v52vjjsrvywa6rt52cm9r9zqt8r2t7mlcwspyetp5h2tztugp9lfyql",
            amount_msat: None,
            payment_hash: SPEC_HASH,
            timestamp_s: SPEC_TIMESTAMP_S,
            expiry_s: DEFAULT_EXPIRY_S,
            network: Network::Bitcoin,
            description: Some("Please consider supporting this project"),
            hashed_description: None,
        },
        Valid {
            name: "$3 for a cup of coffee within one minute",
            invoice: "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpu9qrsgquk0rl77nj30yxdy8j9vdx85fkpmdla2087ne0xh8nhedh8w27kyke0lp53ut353s06fv3qfegext0eh0ymjpf39tuven09sam30g4vgpfna3rh",
            // 2500u: 2500 micro-bitcoin = 250 000 sat.
            amount_msat: Some(250_000_000),
            payment_hash: SPEC_HASH,
            timestamp_s: SPEC_TIMESTAMP_S,
            expiry_s: 60,
            network: Network::Bitcoin,
            description: Some("1 cup coffee"),
            hashed_description: None,
        },
        Valid {
            name: "0.0025 BTC for a cup of nonsense",
            invoice: "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpquwpc4curk03c9wlrswe78q4eyqc7d8d0xqzpu9qrsgqhtjpauu9ur7fw2thcl4y9vfvh4m9wlfyz2gem29g5ghe2aak2pm3ps8fdhtceqsaagty2vph7utlgj48u0ged6a337aewvraedendscp573dxr",
            amount_msat: Some(250_000_000),
            payment_hash: SPEC_HASH,
            timestamp_s: SPEC_TIMESTAMP_S,
            expiry_s: 60,
            network: Network::Bitcoin,
            description: Some("ナンセンス 1杯"),
            hashed_description: None,
        },
        Valid {
            name: "$24 for an entire list of things (hashed)",
            invoice: "lnbc20m1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqhp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqs9qrsgq7ea976txfraylvgzuxs8kgcw23ezlrszfnh8r6qtfpr6cxga50aj6txm9rxrydzd06dfeawfk6swupvz4erwnyutnjq7x39ymw6j38gp7ynn44",
            // 20m: 20 milli-bitcoin = 2 000 000 sat.
            amount_msat: Some(2_000_000_000),
            payment_hash: SPEC_HASH,
            timestamp_s: SPEC_TIMESTAMP_S,
            expiry_s: DEFAULT_EXPIRY_S,
            network: Network::Bitcoin,
            description: None,
            hashed_description: Some(SPEC_LONG_DESCRIPTION),
        },
        Valid {
            name: "the same, on testnet, with a fallback address",
            invoice: "lntb20m1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygshp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqfpp3x9et2e20v6pu37c5d9vax37wxq72un989qrsgqdj545axuxtnfemtpwkc45hx9d2ft7x04mt8q7y6t0k2dge9e7h8kpy9p34ytyslj3yu569aalz2xdk8xkd7ltxqld94u8h2esmsmacgpghe9k8",
            amount_msat: Some(2_000_000_000),
            payment_hash: SPEC_HASH,
            timestamp_s: SPEC_TIMESTAMP_S,
            expiry_s: DEFAULT_EXPIRY_S,
            network: Network::Testnet,
            description: None,
            hashed_description: Some(SPEC_LONG_DESCRIPTION),
        },
        Valid {
            name: "mainnet, fallback address and extra routing info",
            invoice: "lnbc20m1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqhp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqsfpp3qjmp7lwpagxun9pygexvgpjdc4jdj85fr9yq20q82gphp2nflc7jtzrcazrra7wwgzxqc8u7754cdlpfrmccae92qgzqvzq2ps8pqqqqqqpqqqqq9qqqvpeuqafqxu92d8lr6fvg0r5gv0heeeqgcrqlnm6jhphu9y00rrhy4grqszsvpcgpy9qqqqqqgqqqqq7qqzq9qrsgqdfjcdk6w3ak5pca9hwfwfh63zrrz06wwfya0ydlzpgzxkn5xagsqz7x9j4jwe7yj7vaf2k9lqsdk45kts2fd0fkr28am0u4w95tt2nsq76cqw0",
            amount_msat: Some(2_000_000_000),
            payment_hash: SPEC_HASH,
            timestamp_s: SPEC_TIMESTAMP_S,
            expiry_s: DEFAULT_EXPIRY_S,
            network: Network::Bitcoin,
            description: None,
            hashed_description: Some(SPEC_LONG_DESCRIPTION),
        },
        Valid {
            name: "mainnet, fallback P2SH address",
            invoice: "lnbc20m1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygshp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqfppj3a24vwu6r8ejrss3axul8rxldph2q7z99qrsgqz6qsgww34xlatfj6e3sngrwfy3ytkt29d2qttr8qz2mnedfqysuqypgqex4haa2h8fx3wnypranf3pdwyluftwe680jjcfp438u82xqphf75ym",
            amount_msat: Some(2_000_000_000),
            payment_hash: SPEC_HASH,
            timestamp_s: SPEC_TIMESTAMP_S,
            expiry_s: DEFAULT_EXPIRY_S,
            network: Network::Bitcoin,
            description: None,
            hashed_description: Some(SPEC_LONG_DESCRIPTION),
        },
        Valid {
            name: "mainnet, fallback P2WPKH address",
            invoice: "lnbc20m1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygshp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqfppqw508d6qejxtdg4y5r3zarvary0c5xw7k9qrsgqt29a0wturnys2hhxpner2e3plp6jyj8qx7548zr2z7ptgjjc7hljm98xhjym0dg52sdrvqamxdezkmqg4gdrvwwnf0kv2jdfnl4xatsqmrnsse",
            amount_msat: Some(2_000_000_000),
            payment_hash: SPEC_HASH,
            timestamp_s: SPEC_TIMESTAMP_S,
            expiry_s: DEFAULT_EXPIRY_S,
            network: Network::Bitcoin,
            description: None,
            hashed_description: Some(SPEC_LONG_DESCRIPTION),
        },
        Valid {
            name: "mainnet, fallback P2WSH address",
            invoice: "lnbc20m1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygshp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqfp4qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q9qrsgq9vlvyj8cqvq6ggvpwd53jncp9nwc47xlrsnenq2zp70fq83qlgesn4u3uyf4tesfkkwwfg3qs54qe426hp3tz7z6sweqdjg05axsrjqp9yrrwc",
            amount_msat: Some(2_000_000_000),
            payment_hash: SPEC_HASH,
            timestamp_s: SPEC_TIMESTAMP_S,
            expiry_s: DEFAULT_EXPIRY_S,
            network: Network::Bitcoin,
            description: None,
            hashed_description: Some(SPEC_LONG_DESCRIPTION),
        },
        Valid {
            name: "0.00967878534 BTC within one week, amount in pico-BTC",
            invoice: "lnbc9678785340p1pwmna7lpp5gc3xfm08u9qy06djf8dfflhugl6p7lgza6dsjxq454gxhj9t7a0sd8dgfkx7cmtwd68yetpd5s9xar0wfjn5gpc8qhrsdfq24f5ggrxdaezqsnvda3kkum5wfjkzmfqf3jkgem9wgsyuctwdus9xgrcyqcjcgpzgfskx6eqf9hzqnteypzxz7fzypfhg6trddjhygrcyqezcgpzfysywmm5ypxxjemgw3hxjmn8yptk7untd9hxwg3q2d6xjcmtv4ezq7pqxgsxzmnyyqcjqmt0wfjjq6t5v4khxsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygsxqyjw5qcqp2rzjq0gxwkzc8w6323m55m4jyxcjwmy7stt9hwkwe2qxmy8zpsgg7jcuwz87fcqqeuqqqyqqqqlgqqqqn3qq9q9qrsgqrvgkpnmps664wgkp43l22qsgdw4ve24aca4nymnxddlnp8vh9v2sdxlu5ywdxefsfvm0fq3sesf08uf6q9a2ke0hc9j6z6wlxg5z5kqpu2v9wz",
            // 9678785340 pico-bitcoin = 967878534 millisatoshi.
            amount_msat: Some(967_878_534),
            payment_hash: "462264ede7e14047e9b249da94fefc47f41f7d02ee9b091815a5506bc8abf75f",
            timestamp_s: 1_572_468_703,
            expiry_s: 604_800,
            network: Network::Bitcoin,
            description: Some("Blockstream Store: 88.85 USD for Blockstream Ledger Nano S x 1, \"Back In My Day\" Sticker x 2, \"I Got Lightning Working\" Sticker x 2 and 1 more items"),
            hashed_description: None,
        },
        Valid {
            name: "$30 for coffee beans, features 8, 14 and 99",
            invoice: "lnbc25m1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5vdhkven9v5sxyetpdeessp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9q5sqqqqqqqqqqqqqqqqsgq2a25dxl5hrntdtn6zvydt7d66hyzsyhqs4wdynavys42xgl6sgx9c4g7me86a27t07mdtfry458rtjr0v92cnmswpsjscgt2vcse3sgpz3uapa",
            // 25m: 2 500 000 sat.
            amount_msat: Some(2_500_000_000),
            payment_hash: SPEC_HASH,
            timestamp_s: SPEC_TIMESTAMP_S,
            expiry_s: DEFAULT_EXPIRY_S,
            network: Network::Bitcoin,
            description: Some("coffee beans"),
            hashed_description: None,
        },
        Valid {
            name: "same, but all upper case",
            invoice: "LNBC25M1PVJLUEZPP5QQQSYQCYQ5RQWZQFQQQSYQCYQ5RQWZQFQQQSYQCYQ5RQWZQFQYPQDQ5VDHKVEN9V5SXYETPDEESSP5ZYG3ZYG3ZYG3ZYG3ZYG3ZYG3ZYG3ZYG3ZYG3ZYG3ZYG3ZYG3ZYGS9Q5SQQQQQQQQQQQQQQQQSGQ2A25DXL5HRNTDTN6ZVYDT7D66HYZSYHQS4WDYNAVYS42XGL6SGX9C4G7ME86A27T07MDTFRY458RTJR0V92CNMSWPSJSCGT2VCSE3SGPZ3UAPA",
            amount_msat: Some(2_500_000_000),
            payment_hash: SPEC_HASH,
            timestamp_s: SPEC_TIMESTAMP_S,
            expiry_s: DEFAULT_EXPIRY_S,
            network: Network::Bitcoin,
            description: Some("coffee beans"),
            hashed_description: None,
        },
        Valid {
            name: "same, but including fields which must be ignored",
            invoice: "lnbc25m1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5vdhkven9v5sxyetpdeessp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9q5sqqqqqqqqqqqqqqqqsgq2qrqqqfppnqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqppnqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqpp4qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqhpnqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqhp4qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqspnqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqsp4qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqnp5qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqnpkqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqz599y53s3ujmcfjp5xrdap68qxymkqphwsexhmhr8wdz5usdzkzrse33chw6dlp3jhuhge9ley7j2ayx36kawe7kmgg8sv5ugdyusdcqzn8z9x",
            amount_msat: Some(2_500_000_000),
            payment_hash: SPEC_HASH,
            timestamp_s: SPEC_TIMESTAMP_S,
            expiry_s: DEFAULT_EXPIRY_S,
            network: Network::Bitcoin,
            description: Some("coffee beans"),
            hashed_description: None,
        },
        Valid {
            name: "0.01 BTC with payment metadata 0x01fafaf0",
            invoice: "lnbc10m1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdp9wpshjmt9de6zqmt9w3skgct5vysxjmnnd9jx2mq8q8a04uqsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9q2gqqqqqqsgq7hf8he7ecf7n4ffphs6awl9t6676rrclv9ckg3d3ncn7fct63p6s365duk5wrk202cfy3aj5xnnp5gs3vrdvruverwwq7yzhkf5a3xqpd05wjc",
            // 10m: 1 000 000 sat.
            amount_msat: Some(1_000_000_000),
            payment_hash: SPEC_HASH,
            timestamp_s: SPEC_TIMESTAMP_S,
            expiry_s: DEFAULT_EXPIRY_S,
            network: Network::Bitcoin,
            description: Some("payment metadata inside"),
            hashed_description: None,
        },
    ]
}

/// An invalid example, and words the refusal must contain so that it is refused for the
/// reason the spec gives (and not, say, because of a copying mistake breaking the checksum).
struct Invalid {
    name: &'static str,
    invoice: &'static str,
    reason: &'static str,
}

fn invalid_examples() -> Vec<Invalid> {
    vec![
        Invalid {
            name: "same, but adding invalid unknown feature 100",
            invoice: "lnbc25m1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5vdhkven9v5sxyetpdeessp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9q4psqqqqqqqqqqqqqqqqsgqtqyx5vggfcsll4wu246hz02kp85x4katwsk9639we5n5yngc3yhqkm35jnjw4len8vrnqnf5ejh0mzj9n3vz2px97evektfm2l6wqccp3y7372",
            reason: "features",
        },
        Invalid {
            name: "bech32 checksum is invalid",
            invoice: "lnbc2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpquwpc4curk03c9wlrswe78q4eyqc7d8d0xqzpuyk0sg5g70me25alkluzd2x62aysf2pyy8edtjeevuv4p2d5p76r4zkmneet7uvyakky2zr4cusd45tftc9c5fh0nnqpnl2jfll544esqchsrnt",
            reason: "checksum",
        },
        Invalid {
            name: "malformed bech32 string (no 1)",
            invoice: "pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpquwpc4curk03c9wlrswe78q4eyqc7d8d0xqzpuyk0sg5g70me25alkluzd2x62aysf2pyy8edtjeevuv4p2d5p76r4zkmneet7uvyakky2zr4cusd45tftc9c5fh0nnqpnl2jfll544esqchsrny",
            reason: "separator",
        },
        Invalid {
            name: "malformed bech32 string (mixed case)",
            invoice: "LNBC2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpquwpc4curk03c9wlrswe78q4eyqc7d8d0xqzpuyk0sg5g70me25alkluzd2x62aysf2pyy8edtjeevuv4p2d5p76r4zkmneet7uvyakky2zr4cusd45tftc9c5fh0nnqpnl2jfll544esqchsrny",
            reason: "mixed",
        },
        Invalid {
            name: "signature is not recoverable",
            invoice: "lnbc2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpusp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9qrsgqwgt7mcn5yqw3yx0w94pswkpq6j9uh6xfqqqtsk4tnarugeektd4hg5975x9am52rz4qskukxdmjemg92vvqz8nvmsye63r5ykel43pgz7zq0g2",
            reason: "signature",
        },
        Invalid {
            name: "string is too short",
            invoice: "lnbc1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpl2pkx2ctnv5sxxmmwwd5kgetjypeh2ursdae8g6na6hlh",
            reason: "too short",
        },
        Invalid {
            name: "invalid multiplier",
            invoice: "lnbc2500x1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpusp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9qrsgqrrzc4cvfue4zp3hggxp47ag7xnrlr8vgcmkjxk3j5jqethnumgkpqp23z9jclu3v0a7e0aruz366e9wqdykw6dxhdzcjjhldxq0w6wgqcnu43j",
            reason: "SI prefix",
        },
        Invalid {
            name: "invalid sub-millisatoshi precision",
            invoice: "lnbc2500000001p1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpusp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9qrsgq0lzc236j96a95uv0m3umg28gclm5lqxtqqwk32uuk4k6673k6n5kfvx3d2h8s295fad45fdhmusm8sjudfhlf6dcsxmfvkeywmjdkxcp99202x",
            reason: "millisatoshi",
        },
    ]
}

fn hash_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_spec_key_is_the_spec_payee() {
    let secret = SecretKey::from_slice(&from_hex(SPEC_PRIV_KEY)).expect("spec key");
    let public = PublicKey::from_secret_key(&Secp256k1::new(), &secret);
    assert_eq!(hex(&public.serialize()), SPEC_PAYEE);
}

#[test]
fn every_valid_example_parses_with_the_fields_the_spec_gives() {
    for example in valid_examples() {
        let parsed = bolt11::parse(example.invoice)
            .unwrap_or_else(|e| panic!("{}: refused: {e}", example.name));
        assert_eq!(parsed.amount_msat, example.amount_msat, "{}", example.name);
        assert_eq!(
            parsed.payment_hash.to_hex(),
            example.payment_hash,
            "{}",
            example.name
        );
        assert_eq!(parsed.timestamp_s, example.timestamp_s, "{}", example.name);
        assert_eq!(parsed.expiry_s, example.expiry_s, "{}", example.name);
        assert_eq!(
            parsed.expires_at_s,
            example.timestamp_s + example.expiry_s,
            "{}",
            example.name
        );
        assert_eq!(parsed.network, example.network, "{}", example.name);
        assert_eq!(
            parsed.description.as_deref(),
            example.description,
            "{}",
            example.name
        );
        assert_eq!(
            parsed.description_hash.map(|h| hex(&h)),
            example.hashed_description.map(hash_hex),
            "{}",
            example.name
        );
        assert_eq!(parsed.payee, SPEC_PAYEE, "{}", example.name);
    }
}

#[test]
fn every_valid_example_parses_with_a_lightning_prefix_and_the_same_fields() {
    for example in valid_examples() {
        let plain = bolt11::parse(example.invoice).expect("valid example");
        for prefixed in [
            format!("lightning:{}", example.invoice),
            format!("LIGHTNING:{}", example.invoice),
            format!("  lightning:{}\n", example.invoice),
        ] {
            let parsed = bolt11::parse(&prefixed)
                .unwrap_or_else(|e| panic!("{}: refused with prefix: {e}", example.name));
            assert_eq!(parsed, plain, "{}", example.name);
        }
    }
}

#[test]
fn every_valid_example_in_the_other_case_parses_the_same() {
    for example in valid_examples() {
        let plain = bolt11::parse(example.invoice).expect("valid example");
        let other_case = if example.invoice.starts_with("LN") {
            example.invoice.to_ascii_lowercase()
        } else {
            example.invoice.to_ascii_uppercase()
        };
        let parsed = bolt11::parse(&other_case)
            .unwrap_or_else(|e| panic!("{}: refused in the other case: {e}", example.name));
        assert_eq!(parsed, plain, "{}", example.name);
    }
}

#[test]
fn every_invalid_example_is_refused_for_the_reason_the_spec_gives() {
    for example in invalid_examples() {
        match bolt11::parse(example.invoice) {
            Ok(parsed) => panic!("{}: accepted: {parsed:?}", example.name),
            Err(Bolt11Error::Unparsable(cause)) => {
                eprintln!("{}: {cause}", example.name);
                assert!(
                    cause
                        .to_lowercase()
                        .contains(&example.reason.to_lowercase()),
                    "{}: refused, but for another reason: {cause}",
                    example.name
                )
            }
            Err(other) => panic!("{}: unexpected error {other:?}", example.name),
        }
    }
}

#[test]
fn a_legacy_example_without_payment_secret_is_refused() {
    // The first example of the older revision of BOLT #11 (before every example carried an
    // `s` field, e.g. lightning/bolts commit 0028ac9b). Today's BOLT #11 says a writer MUST
    // include exactly one `s` field, and lightning-invoice refuses an invoice without one.
    let legacy = "lnbc1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpl2pkx2ctnv5sxxmmwwd5kgetjypeh2ursdae8g6twvus8g6rfwvs8qun0dfjkxaq8rkx3yf5tcsyz3d73gafnh3cax9rn449d9p5uxz9ezhhypd0elx87sjle52x86fux2ypatgddc6k63n7erqz25le42c4u4ecky03ylcqca784w";
    match bolt11::parse(legacy) {
        Err(Bolt11Error::Unparsable(cause)) => {
            assert!(cause.contains("payment secret"), "{cause}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn one_changed_character_breaks_every_valid_example() {
    // Flip one data character near the end of the signature: the checksum no longer matches.
    for example in valid_examples() {
        let mut chars: Vec<char> = example.invoice.chars().collect();
        let at = chars.len() - 10;
        chars[at] = match chars[at] {
            'q' => 'p',
            'Q' => 'P',
            c if c.is_ascii_uppercase() => 'Q',
            _ => 'q',
        };
        let broken: String = chars.into_iter().collect();
        assert!(
            matches!(bolt11::parse(&broken), Err(Bolt11Error::Unparsable(_))),
            "{}",
            example.name
        );
    }
}

#[test]
fn garbage_is_refused() {
    for text in [
        "",
        "lightning:",
        "lnbc",
        "hello",
        "lnurl1dp68gurn8ghj7",
        "💥",
    ] {
        assert!(
            matches!(bolt11::parse(text), Err(Bolt11Error::Unparsable(_))),
            "{text:?}"
        );
    }
}

#[test]
fn network_names_parse_and_print() {
    for (text, network) in [
        ("bitcoin", Network::Bitcoin),
        ("mainnet", Network::Bitcoin),
        ("testnet", Network::Testnet),
        ("signet", Network::Signet),
        ("regtest", Network::Regtest),
        ("simnet", Network::Simnet),
        ("REGTEST", Network::Regtest),
    ] {
        assert_eq!(text.parse::<Network>(), Ok(network), "{text}");
    }
    for network in [
        Network::Bitcoin,
        Network::Testnet,
        Network::Signet,
        Network::Regtest,
        Network::Simnet,
    ] {
        assert_eq!(network.as_str().parse::<Network>(), Ok(network));
        assert_eq!(network.to_string(), network.as_str());
    }
    assert!("liquid".parse::<Network>().is_err());
    assert!("".parse::<Network>().is_err());
}

// ---- `check`, against invoices made and signed here -------------------------------------

const NODE_SECRET: [u8; 32] = [0x42; 32];
const HASH: [u8; 32] = [0xab; 32];
const TIMESTAMP_S: u64 = 1_700_000_000;
const EXPIRY_S: u64 = 600;
const AMOUNT_MSAT: u64 = 21_000;

/// What the invoice built by [`make`] holds.
struct Made {
    currency: Currency,
    amount_msat: Option<u64>,
    description: Result<&'static str, [u8; 32]>,
}

impl Default for Made {
    fn default() -> Made {
        Made {
            currency: Currency::Regtest,
            amount_msat: Some(AMOUNT_MSAT),
            description: Ok("farthing test"),
        }
    }
}

/// A regtest (by default) invoice signed by `NODE_SECRET`.
fn make(made: Made) -> String {
    let secp = Secp256k1::new();
    let secret = SecretKey::from_slice(&NODE_SECRET).expect("secret key");
    let builder = InvoiceBuilder::new(made.currency)
        .payment_hash(sha256::Hash::from_byte_array(HASH))
        .payment_secret(PaymentSecret([0x11; 32]))
        .duration_since_epoch(Duration::from_secs(TIMESTAMP_S))
        .expiry_time(Duration::from_secs(EXPIRY_S))
        .min_final_cltv_expiry_delta(144);
    let builder = match made.amount_msat {
        Some(amount_msat) => builder.amount_milli_satoshis(amount_msat),
        None => builder,
    };
    let builder = match made.description {
        Ok(text) => builder.description(text.to_owned()),
        Err(hash) => builder.description_hash(sha256::Hash::from_byte_array(hash)),
    };
    builder
        .build_signed(|message| secp.sign_ecdsa_recoverable(message, &secret))
        .expect("invoice")
        .to_string()
}

fn all_expectations_met() -> Expect {
    Expect {
        amount_msat: Some(AMOUNT_MSAT),
        payment_hash: Some(PaymentHash(HASH)),
        network: Some(Network::Regtest),
        expires_no_later_than_s: Some(TIMESTAMP_S + EXPIRY_S),
        description_hash: None,
        now_s: Some(TIMESTAMP_S + EXPIRY_S - 1),
    }
}

#[test]
fn check_accepts_an_invoice_that_meets_every_expectation() {
    let invoice = make(Made::default());
    let checked: CheckedInvoice =
        bolt11::check(&invoice, &all_expectations_met()).expect("accepted");
    assert_eq!(checked.amount_msat, Some(AMOUNT_MSAT));
    assert_eq!(checked.payment_hash, PaymentHash(HASH));
    assert_eq!(checked.network, Network::Regtest);
    assert_eq!(checked.timestamp_s, TIMESTAMP_S);
    assert_eq!(checked.expiry_s, EXPIRY_S);
    assert_eq!(checked.expires_at_s, TIMESTAMP_S + EXPIRY_S);
    assert_eq!(checked.description.as_deref(), Some("farthing test"));
    let node = SecretKey::from_slice(&NODE_SECRET).expect("secret key");
    assert_eq!(
        checked.payee,
        hex(&PublicKey::from_secret_key(&Secp256k1::new(), &node).serialize())
    );
    // Nothing expected: only parsing.
    assert_eq!(bolt11::check(&invoice, &Expect::default()), Ok(checked));
}

#[test]
fn check_refuses_a_wrong_amount() {
    let invoice = make(Made::default());
    let expect = Expect {
        amount_msat: Some(AMOUNT_MSAT + 1),
        ..all_expectations_met()
    };
    assert_eq!(
        bolt11::check(&invoice, &expect),
        Err(Bolt11Error::WrongAmount {
            expected_msat: AMOUNT_MSAT + 1,
            found_msat: AMOUNT_MSAT,
        })
    );
}

#[test]
fn check_refuses_a_missing_amount_when_one_is_expected() {
    let invoice = make(Made {
        amount_msat: None,
        ..Made::default()
    });
    assert_eq!(
        bolt11::check(&invoice, &all_expectations_met()),
        Err(Bolt11Error::AmountMissing)
    );
    let any_amount = Expect {
        amount_msat: None,
        ..all_expectations_met()
    };
    assert_eq!(
        bolt11::check(&invoice, &any_amount).map(|c| c.amount_msat),
        Ok(None)
    );
}

#[test]
fn check_refuses_a_wrong_network() {
    let invoice = make(Made {
        currency: Currency::BitcoinTestnet,
        ..Made::default()
    });
    assert_eq!(
        bolt11::check(&invoice, &all_expectations_met()),
        Err(Bolt11Error::WrongNetwork {
            expected: Network::Regtest,
            found: Network::Testnet,
        })
    );
    for (currency, network) in [
        (Currency::Bitcoin, Network::Bitcoin),
        (Currency::BitcoinTestnet, Network::Testnet),
        (Currency::Signet, Network::Signet),
        (Currency::Regtest, Network::Regtest),
        (Currency::Simnet, Network::Simnet),
    ] {
        let invoice = make(Made {
            currency,
            ..Made::default()
        });
        let expect = Expect {
            network: Some(network),
            ..all_expectations_met()
        };
        assert_eq!(
            bolt11::check(&invoice, &expect).map(|c| c.network),
            Ok(network)
        );
    }
}

#[test]
fn check_refuses_a_wrong_payment_hash() {
    let invoice = make(Made::default());
    let expect = Expect {
        payment_hash: Some(PaymentHash([0xcd; 32])),
        ..all_expectations_met()
    };
    assert_eq!(
        bolt11::check(&invoice, &expect),
        Err(Bolt11Error::WrongPaymentHash {
            expected: PaymentHash([0xcd; 32]),
            found: PaymentHash(HASH),
        })
    );
}

#[test]
fn check_refuses_an_expiry_later_than_the_limit() {
    let invoice = make(Made::default());
    let expect = Expect {
        expires_no_later_than_s: Some(TIMESTAMP_S + EXPIRY_S - 1),
        ..all_expectations_met()
    };
    assert_eq!(
        bolt11::check(&invoice, &expect),
        Err(Bolt11Error::ExpiresTooLate {
            expires_at_s: TIMESTAMP_S + EXPIRY_S,
            limit_s: TIMESTAMP_S + EXPIRY_S - 1,
        })
    );
}

#[test]
fn check_refuses_an_invoice_expired_at_now() {
    let invoice = make(Made::default());
    for now_s in [TIMESTAMP_S + EXPIRY_S, TIMESTAMP_S + EXPIRY_S + 3600] {
        let expect = Expect {
            now_s: Some(now_s),
            ..all_expectations_met()
        };
        assert_eq!(
            bolt11::check(&invoice, &expect),
            Err(Bolt11Error::Expired {
                expired_at_s: TIMESTAMP_S + EXPIRY_S,
                now_s,
            })
        );
    }
    // One second before the end, and before it was even made, it is not expired.
    for now_s in [TIMESTAMP_S + EXPIRY_S - 1, TIMESTAMP_S, 0] {
        let expect = Expect {
            now_s: Some(now_s),
            ..all_expectations_met()
        };
        assert!(bolt11::check(&invoice, &expect).is_ok(), "now_s {now_s}");
    }
}

#[test]
fn check_matches_the_description_hash() {
    let metadata = farthing_lightning::lnurl::pay_metadata("a coffee", Some("alice@example.com"));
    let hash: [u8; 32] = Sha256::digest(metadata.as_bytes()).into();
    let invoice = make(Made {
        description: Err(hash),
        ..Made::default()
    });
    let expect = Expect {
        description_hash: Some(farthing_lightning::lnurl::description_hash(&metadata)),
        ..all_expectations_met()
    };
    let checked = bolt11::check(&invoice, &expect).expect("matching description hash");
    assert_eq!(checked.description_hash, Some(hash));
    assert_eq!(checked.description, None);

    // Another metadata string (one character differs): refused.
    let other = farthing_lightning::lnurl::pay_metadata("a coffeE", Some("alice@example.com"));
    let expect = Expect {
        description_hash: Some(farthing_lightning::lnurl::description_hash(&other)),
        ..all_expectations_met()
    };
    assert_eq!(
        bolt11::check(&invoice, &expect),
        Err(Bolt11Error::WrongDescriptionHash)
    );

    // A plain description where a hash is expected: refused.
    let plain = make(Made::default());
    let expect = Expect {
        description_hash: Some(hash),
        ..all_expectations_met()
    };
    assert_eq!(
        bolt11::check(&plain, &expect),
        Err(Bolt11Error::WrongDescriptionHash)
    );
}

#[test]
fn check_refuses_an_invoice_signed_by_someone_else_for_the_payee_it_claims() {
    // An invoice that names a payee (`n`) but is signed by another key: the signature does
    // not verify against `n`, so it is refused.
    let secp = Secp256k1::new();
    let signer = SecretKey::from_slice(&[0x43; 32]).expect("secret key");
    let claimed =
        PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&NODE_SECRET).expect("key"));
    let forged = InvoiceBuilder::new(Currency::Regtest)
        .payment_hash(sha256::Hash::from_byte_array(HASH))
        .payment_secret(PaymentSecret([0x11; 32]))
        .duration_since_epoch(Duration::from_secs(TIMESTAMP_S))
        .min_final_cltv_expiry_delta(144)
        .description("forged".to_owned())
        .payee_pub_key(claimed)
        .build_raw()
        .expect("raw invoice")
        .sign::<_, ()>(|message| Ok(secp.sign_ecdsa_recoverable(message, &signer)))
        .expect("signed")
        .to_string();
    assert!(matches!(
        bolt11::parse(&forged),
        Err(Bolt11Error::Unparsable(cause)) if cause.contains("signature")
    ));
}

#[test]
fn error_messages_say_what_is_wrong() {
    let message = Bolt11Error::WrongAmount {
        expected_msat: 1000,
        found_msat: 2000,
    }
    .to_string();
    assert!(
        message.contains("2000 msat") && message.contains("1000 msat"),
        "{message}"
    );
    let message = Bolt11Error::WrongNetwork {
        expected: Network::Bitcoin,
        found: Network::Regtest,
    }
    .to_string();
    assert!(
        message.contains("regtest") && message.contains("bitcoin"),
        "{message}"
    );
}

fn from_hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}
