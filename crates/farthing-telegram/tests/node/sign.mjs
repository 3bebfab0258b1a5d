// Signs a few Telegram Mini App init data strings with @telegram-apps/init-data-node, an
// implementation independent of farthing's, for tests/interop.rs.
//
// Usage: node tests/node/sign.mjs <bot token> <auth_date unix seconds>
// Prints one JSON object per line: {"case", "init_data", "user_id", "first_name"}.
import { sign } from '@telegram-apps/init-data-node';

const [token, authDateText] = process.argv.slice(2);
if (!token || !/^\d+$/.test(authDateText ?? '')) {
  console.error('usage: node tests/node/sign.mjs <bot token> <auth_date unix seconds>');
  process.exit(2);
}
const authDate = new Date(Number(authDateText) * 1000);

const cases = [
  {
    case: 'direct link, every user field, characters that need encoding',
    data: {
      query_id: 'AAHdF6IQAAAAAN0XohDhrOrc',
      user: {
        id: 279058397,
        first_name: 'Zoë + & = ? / % 🚀',
        last_name: 'Ков',
        username: 'zoe',
        language_code: 'fa',
        is_premium: true,
        allows_write_to_pm: true,
        added_to_attachment_menu: false,
        photo_url: 'https://t.me/i/userpic/320/x.svg',
      },
      chat_type: 'sender',
      chat_instance: '8134722200314281151',
      start_param: 'inv_abc123',
    },
  },
  {
    case: 'attachment menu: receiver and chat',
    data: {
      user: { id: 5, first_name: 'Ann' },
      receiver: { id: 42, first_name: 'Shop bot', is_bot: true, username: 'shop_bot' },
      chat: { id: -1001234567890, type: 'supergroup', title: 'Café ☕', username: 'cafe' },
      can_send_after: 10,
    },
  },
  {
    case: 'with a third-party signature field, which the hash covers',
    data: {
      user: { id: 7, first_name: 'Sig' },
      signature: 'TYJxVcisqbWjtodPepiJ6ghziUL94-KNpG8Pau-X7oNNLNBM72APCpi_RKiUlBvcqo5L-LAxIc3dnTzcZX_PDg',
    },
  },
  {
    case: 'minimal',
    data: { user: { id: 9007199254740991, first_name: 'Max' } },
  },
];

for (const { case: name, data } of cases) {
  console.log(JSON.stringify({
    case: name,
    init_data: sign(data, token, authDate),
    user_id: data.user.id,
    first_name: data.user.first_name,
  }));
}
