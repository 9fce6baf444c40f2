package hook

import (
	"time"

	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/sink/amqpsink"
	"github.com/sluicehq/sluice/internal/sink/httpsink"
	"github.com/sluicehq/sluice/internal/sink/kafkasink"
)

// The hook host knows no destination: its tests register the four they
// deliver through, as app does with every type.
func testDestinations() []sink.Destination {
	return []sink.Destination{httpsink.Destination(), amqpsink.QueueDestination(), amqpsink.ExchangeDestination(), kafkasink.Destination()}
}

const (
	TypeHTTP             = httpsink.Type
	TypeRabbitMQQueue    = amqpsink.TypeQueue
	TypeRabbitMQExchange = amqpsink.TypeExchange
	TypeKafka            = kafkasink.Type
)

func httpOf(h *Hook) *httpsink.Settings   { return h.Settings.(*httpsink.Settings) }
func rabbitOf(h *Hook) *amqpsink.Settings { return h.Settings.(*amqpsink.Settings) }
func kafkaOf(h *Hook) *kafkasink.Settings { return h.Settings.(*kafkasink.Settings) }

func brokerHook(typ string) Hook {
	return Hook{Name: typ, Active: true, Events: []string{"in.gen.calltrack.*"}, Type: typ, MaxBatchSize: 10,
		RetryTimes: intp(1), RetryPeriod: Duration(50 * time.Millisecond), StopAfterDeadLetters: 100}
}
