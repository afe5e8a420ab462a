import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { errorMessage, redactUrl } from '../src/util/logger.js';

describe('redaction of credentials in logs and errors', () => {
  it('redactUrl hides passwords holding @, spaces or other reserved characters', () => {
    for (const [url, host] of [
      ['amqp://user:p@ss@rabbit.internal:5672/vhost', 'rabbit.internal:5672'],
      ['postgres://app:a b c@db.internal:5432/shop', 'db.internal:5432'],
      ['postgres://app:we%40ird%20pw@db.internal/shop', 'db.internal'],
    ] as const) {
      const shown = redactUrl(url);
      assert.doesNotMatch(shown, /p@ss|ss@|a b c|b c|we%40|ird/, `${url} -> ${shown}`);
      assert.ok(shown.includes(host), `${url} -> ${shown}: the host is gone`);
      assert.ok(shown.includes('***'), `${url} -> ${shown}`);
    }
  });

  it('redactUrl hides the password of a keyword connection string', () => {
    const shown = redactUrl("host=db.internal password='a b' dbname=shop");
    assert.equal(shown, 'host=db.internal password=*** dbname=shop');
    assert.equal(
      redactUrl('host=db.internal password=secret dbname=shop'),
      'host=db.internal password=*** dbname=shop',
    );
  });

  it('errorMessage hides URL passwords holding @ or spaces, and keyword passwords', () => {
    const cases: Array<[string, string]> = [
      [
        'connect failed for amqp://user:p@ss@rabbit.internal:5672 (ECONNREFUSED)',
        'connect failed for amqp://user:***@rabbit.internal:5672 (ECONNREFUSED)',
      ],
      [
        'no route to postgres://app:a b c@db.internal:5432/shop',
        'no route to postgres://app:***@db.internal:5432/shop',
      ],
      ['bad DSN "host=x password=secret dbname=y"', 'bad DSN "host=x password=*** dbname=y"'],
      ["bad DSN host=x password='a b\\' c' dbname=y", 'bad DSN host=x password=*** dbname=y'],
      ['PGPASSWORD = hunter2 was refused', 'PGPASSWORD = *** was refused'],
      [
        'two: amqp://a:x@h1:5672, amqp://b:y@z@h2:5672',
        'two: amqp://a:***@h1:5672, amqp://b:***@h2:5672',
      ],
    ];
    for (const [text, expected] of cases) {
      assert.equal(errorMessage(new Error(text)), expected);
    }
  });
});
