"""Run one service and wait for its result (the original lrts's first example).
python3 -m lrts.examples.wait_for [--scheduler-port 5555] [--progress-port 5454]"""
import argparse

from lrts import ApplicationInformation, ClientApplication, ServiceResult
from lrts.examples.services.mult_service import MultService


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scheduler-address", default="127.0.0.1")
    parser.add_argument("--scheduler-port", default="5555")
    parser.add_argument("--progress-port", default="5454")
    args = parser.parse_args()
    application = ClientApplication(application_information=ApplicationInformation(
        scheduler_address=args.scheduler_address, scheduler_port=args.scheduler_port,
        progress_server_address=args.scheduler_address, progress_server_port=args.progress_port))
    application.start_application()
    service_id: str = application.schedule_service(service=MultService(a=6, b=9))
    result: ServiceResult = application.wait_for(service_id=service_id)
    print(f'Service with ID: {service_id} finished with result: {result.service_result}')
    application.stop_application()


if __name__ == '__main__':
    main()
